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
    parser.add_argument("--profile", choices=sorted(PROFILES), default="demo",
                        help="default size: demo = 108 x 2600 x 2200, full = 216 x 10980 x 10980 (default: demo)")
    parser.add_argument("--scenes", type=int, help="number of dates (overrides the profile)")
    parser.add_argument("--width", type=int, help="width in pixels (overrides the profile)")
    parser.add_argument("--height", type=int, help="height in pixels (overrides the profile)")
    parser.add_argument("--crs", default=DEFAULT_CRS, help=f"CRS of the scenes (default {DEFAULT_CRS})")
    parser.add_argument("--pixel-size", type=float, default=DEFAULT_PIXEL_SIZE, help="pixel size (default 10)")
    parser.add_argument("--origin", type=float, nargs=2, metavar=("X", "Y"), default=DEFAULT_ORIGIN,
                        help="upper-left corner (default 300000 4900020)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--tile-granule", default="T31TCJ", help="granule name in file names (default T31TCJ)")
    parser.add_argument("--year", type=int, default=2023, help="year of the dates (default 2023)")
    parser.add_argument("--force", action="store_true", help="replace a different series already in OUT_DIR")
    return parser


def main(argv=None) -> int:
    """Run ``sample`` with ``argv`` (default sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Generate the series described by parsed ``args``; 0 on success, 1 on a reported error.

    ``generate_series`` is looked up on the package, so that replacing
    ``temporal_median_cli.sample.generate_series`` (as tests do) takes effect here.
    """
    from temporal_median_cli import sample as package

    defaults = PROFILES[args.profile]
    try:
        series = package.generate_series(
            args.out_dir,
            scenes=args.scenes if args.scenes is not None else defaults["scenes"],
            width=args.width if args.width is not None else defaults["width"],
            height=args.height if args.height is not None else defaults["height"],
            crs=args.crs, pixel_size=args.pixel_size, origin=tuple(args.origin), seed=args.seed,
            granule=args.tile_granule, year=args.year, force=args.force,
            log=lambda line: print(line, file=sys.stderr),
        )
    except ValueError as exc:
        print(f"sample: error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(series.scenes)} scenes of {series.width} x {series.height} in {series.out_dir}; "
          f"ground truth {series.ground_truth_path}")
    return 0
