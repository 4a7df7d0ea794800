"""The mosaic's assembly: the tiles checked into a VRT, one COG from their blocks, the quicklook."""
