"""The `temporal-median sample` command: its options, main and run."""

from __future__ import annotations

import argparse
import sys

from .series import DEFAULT_CRS, DEFAULT_ORIGIN, DEFAULT_PIXEL_SIZE, PROFILES


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``sample`` arguments, on a new parser or on a subcommand parser given by the CLI."""
    from . import __doc__ as package_doc

    parser = parser or argparse.ArgumentParser(prog="temporal-median sample", description=package_doc.splitlines()[0])
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write the series into")
    parser.add_argument("--profile", choices=sorted(PROFILES),
                        help="default size: demo = 108 x 2600 x 2200, full = 216 x 10980 x 10980, area = 3 tiles of "
                             "24 x 1000 x 1000 (default: demo, or area with --tiles)")
    parser.add_argument("--tiles", type=int, choices=(2, 3),
                        help="a multi-tile series: 2 or 3 overlapping tiles in UTM zones 30 and 31, one folder each, "
                             "and items.json for all (default with --profile area: 3)")
    parser.add_argument("--scenes", type=int, help="number of dates (overrides the profile)")
    parser.add_argument("--width", type=int, help="width in pixels (overrides the profile)")
    parser.add_argument("--height", type=int, help="height in pixels (overrides the profile)")
    parser.add_argument("--crs", help=f"CRS of the scenes (default {DEFAULT_CRS}; not with --tiles)")
    parser.add_argument("--pixel-size", type=float, help="pixel size (default 10; not with --tiles)")
    parser.add_argument("--origin", type=float, nargs=2, metavar=("X", "Y"),
                        help="upper-left corner (default 300000 4900020; not with --tiles)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--tile-granule", help="granule name in file names (default T31TCJ; not with --tiles)")
    parser.add_argument("--year", type=int, default=2023, help="year of the dates (default 2023)")
    parser.add_argument("--force", action="store_true", help="replace a different series already in OUT_DIR")
    return parser


def main(argv=None) -> int:
    """Run ``sample`` with ``argv`` (default sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Generate the series described by parsed ``args``; 0 on success, 1 on a reported error.

    ``generate_series`` and ``generate_area`` are looked up on the package, so that replacing
    ``temporal_median_cli.sample.generate_series`` (as tests do) takes effect here.
    """
    from temporal_median_cli import sample as package

    profile = args.profile or ("area" if args.tiles else "demo")
    defaults = PROFILES[profile]
    tiles = args.tiles or defaults.get("tiles")
    size = {
        "scenes": args.scenes if args.scenes is not None else defaults["scenes"],
        "width": args.width if args.width is not None else defaults["width"],
        "height": args.height if args.height is not None else defaults["height"],
    }
    log = lambda line: print(line, file=sys.stderr)
    try:
        if tiles:
            fixed = [f"--{name.replace('_', '-')}" for name in ("crs", "pixel_size", "origin", "tile_granule")
                     if getattr(args, name) is not None]
            if fixed:
                raise ValueError(f"{', '.join(fixed)}: the tiles of --tiles have their own grids (UTM 30 and 31, 10 m)")
            area = package.generate_area(args.out_dir, tiles=tiles, seed=args.seed, year=args.year, force=args.force,
                                         log=log, **size)
            print(f"{len(area.tiles)} tiles ({', '.join(t.granule for t in area.tiles)}) of {size['scenes']} scenes "
                  f"of {size['width']} x {size['height']} in {area.out_dir}; items {area.items_path}")
            return 0
        series = package.generate_series(
            args.out_dir, **size,
            crs=args.crs or DEFAULT_CRS,
            pixel_size=args.pixel_size if args.pixel_size is not None else DEFAULT_PIXEL_SIZE,
            origin=tuple(args.origin) if args.origin is not None else DEFAULT_ORIGIN, seed=args.seed,
            granule=args.tile_granule if args.tile_granule is not None else "T31TCJ", year=args.year,
            force=args.force, log=log,
        )
    except ValueError as exc:
        print(f"sample: error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(series.scenes)} scenes of {series.width} x {series.height} in {series.out_dir}; "
          f"ground truth {series.ground_truth_path}")
    return 0
