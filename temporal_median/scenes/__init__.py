"""Which scenes a job reads: scene metadata, STAC items and searches, the date and cloud selection."""
