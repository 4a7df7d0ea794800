"""Raster I/O: GDAL's environment and C API, TIFF and GeoTIFF bytes, scene reads, tile writes."""
