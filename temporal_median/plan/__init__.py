"""Planning a job before it runs: a discrete-event simulation of the deployed pipeline, and timelines."""
