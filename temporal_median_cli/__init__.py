"""The `temporal-median` command line: sample series, local runs, and the local cloud."""
