"""The job options `run` and `plan` share, and the fanout request body they make."""

from __future__ import annotations

import argparse
import os

from temporal_median.base.grid import DEFAULT_TILE_SIZE, MAX_TILE_SIZE, MIN_TILE_SIZE
from temporal_median.base.methods import DEFAULT_METHOD, METHODS

#: (request field, argparse dest) of the options copied into the body as they are.
_FIELDS = (("start", "start"), ("end", "end"), ("max_cloud", "max_cloud"), ("asset", "asset"), ("bbox", "bbox"),
           ("crs", "crs"), ("resolution", "resolution"), ("periods", "periods"))


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The request's fields as options: windows and method, scene selection, output grid, composites."""
    parser.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE, help=f"window size ({MIN_TILE_SIZE}-{MAX_TILE_SIZE})")
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=DEFAULT_METHOD,
        help="luminance: the RGB of the observed sample of median brightness; per-band: each band's own median",
    )
    parser.add_argument("--start", help="first acquisition day kept, YYYY-MM-DD (inclusive)")
    parser.add_argument("--end", help="last acquisition day kept, YYYY-MM-DD (inclusive)")
    parser.add_argument("--max-cloud", type=float, help="highest cloud cover kept, percent (eo:cloud_cover, or an estimate)")
    parser.add_argument("--asset", help="the STAC items' asset to read (default: visual); ItemCollection inputs only")
    parser.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"),
                        help="output area in degrees (WGS 84); default: the scenes' footprints")
    parser.add_argument("--crs", help="output CRS, e.g. EPSG:32631; default: the scenes' shared CRS, else the UTM zone of the area's centre")
    parser.add_argument("--resolution", type=float, help="output pixel size in the CRS's units; default: the scenes' finest")
    parser.add_argument("--periods", help="composites besides the whole range: month, quarter, season, or START/END,... (default: year)")
    parser.add_argument("--mask", help="drop samples by a classification asset, e.g. scl (sidecar *_SCL.tif for plain files)")
    parser.add_argument("--mask-classes", help="classes dropped, e.g. 0,1,3,8,9,10 (the default with --mask)")


def input_location(value: str) -> str:
    """INPUT as fanout takes it: a URL as it is, a local path made absolute (the servers' working
    directory is not the caller's)."""
    return value if value.startswith(("gs://", "https://", "http://")) else os.path.abspath(value)


def request_body(args: argparse.Namespace) -> dict:
    """The POST /jobs body of the parsed options (fanout validates every field and answers a 400
    naming it; only what argparse cannot carry is checked here).

    Raises
    ------
    ValueError
        ``--mask-classes`` that are not numbers.
    """
    body = {"inputs": input_location(args.input), "tile_size": args.tile_size, "method": args.method}
    for field, dest in _FIELDS:
        value = getattr(args, dest)
        if value is not None:
            body[field] = value
    if args.mask or args.mask_classes:
        body["mask"] = {"asset": args.mask or "scl"}
        if args.mask_classes:
            try:
                body["mask"]["exclude"] = [int(c) for c in args.mask_classes.split(",") if c.strip()]
            except ValueError:
                raise ValueError(f"--mask-classes must be numbers like 0,3,8,9, got {args.mask_classes!r}") from None
    return body
