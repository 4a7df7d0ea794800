"""The three function cores, named as functions/ names them: fanout, median, mosaic."""
