"""`temporal-median sample`: a synthetic year of Sentinel-2-like TCI COGs, with its ground truth.

What a series holds (everything is a deterministic function of the seed):

* The ground: agricultural parcels on two rotated field patterns (wheat, maize, sunflower,
  meadow, rapeseed, fallow), each with its own seasonal colour curve shifted a little per
  parcel; forest and town patches; farm tracks along some parcel edges, two roads and a river;
  a smooth texture and +-2 of per-pixel sensor noise. Clean ground values stay in 1..254.
* Per date: saturated clouds (255 in all bands) from a multi-scale noise field, a thin
  bright fringe around them (valid but contaminated values), darker cloud shadows offset
  towards the sun, thin haze on about one date in seven, and on about one date in four a
  slanted swath edge with 0 (nodata) in all bands beyond it.
* Files, in OUT_DIR: ``{GRANULE}_{YYYYMMDDTHHMMSS}_TCI.tif`` (3-band uint8 COG, 512 blocks,
  lossless DEFLATE with the horizontal predictor, so 0 and 255 stay exact, unlike the course's
  JPEG); ``truth/ground_truth.tif`` (in a subdirectory, so that listing OUT_DIR for inputs
  finds the scenes only): the luminance median of the *clean*, noise-free series, i.e. the
  same dates without clouds, fringes, shadows, haze, swath gaps or sensor noise, computed
  independently of temporal_median.compute.median; what a perfect composite of the cloudy series
  tends to. ``scl/{GRANULE}_{YYYYMMDDTHHMMSS}_SCL.tif`` (a subdirectory too): per scene its
  Sentinel-2 L2A scene classification (1-band uint8 COG at half the resolution: clouds 8/9,
  shadows 3, haze 10, gaps 0, ground 4/5/6, with Sen2Cor-like misses at cloud edges and under
  thin haze; see :mod:`.scl`). ``items.json``: a STAC ItemCollection with one item per scene
  (acquisition time, platform, ``eo:cloud_cover`` of the clouds drawn, the scene as its
  ``visual`` asset and its classification as its ``scl`` asset, projection, grid and
  footprint), what a STAC API would answer for the series. ``series.json``: names, dates,
  geometry, seed and each scene's measured cloud / shadow / nodata fractions. series.json is
  written last, so its presence means the series is complete.

Scenes are generated one at a time in row strips, so the ``full`` profile (216 x 10980 x
10980) needs about one scene in memory, never the series. ``--tiles 2|3`` (or ``--profile
area``) writes a multi-tile series instead: overlapping tiles in two UTM zones, one folder
each, the same dates and sky over all of them (see :mod:`.area`).

Modules, one concept each: ``series`` (constants, SceneInfo, SeriesInfo), ``noise`` (value and
hash noise), ``land`` (the ground and its seasons), ``sky`` (dates, clouds, shadows, haze, swath
gaps), ``cog`` (writing COGs), ``truth`` (the ground truth), ``stac`` (items.json),
``scl`` (the scene classification), ``generate`` (generate_series), ``area`` (generate_area:
the multi-tile series), ``oracle`` (what the generator knows of each sample: clean or not, its
clean ground with and without noise; bench/bench_selection.py --ceiling) and ``command`` (the
command's options and main).
"""

from __future__ import annotations

from .area import AreaInfo, generate_area
from .command import build_parser, main, run
from .generate import generate_series
from .series import (
    COG_MEDIA_TYPE,
    DEFAULT_CRS,
    DEFAULT_ORIGIN,
    DEFAULT_PIXEL_SIZE,
    GROUND_TRUTH,
    ITEMS_JSON,
    PROFILES,
    SCL_DIR,
    SERIES_JSON,
    STAC_EXTENSIONS,
    SceneInfo,
    SeriesInfo,
    scl_name,
)
from .sky import acquisition_times
from .stac import cloud_cover_percent, stac_items, write_item_collection

__all__ = [
    "COG_MEDIA_TYPE",
    "DEFAULT_CRS",
    "DEFAULT_ORIGIN",
    "DEFAULT_PIXEL_SIZE",
    "GROUND_TRUTH",
    "ITEMS_JSON",
    "PROFILES",
    "SCL_DIR",
    "SERIES_JSON",
    "STAC_EXTENSIONS",
    "AreaInfo",
    "SceneInfo",
    "SeriesInfo",
    "acquisition_times",
    "build_parser",
    "cloud_cover_percent",
    "generate_area",
    "generate_series",
    "main",
    "run",
    "scl_name",
    "stac_items",
    "write_item_collection",
]
