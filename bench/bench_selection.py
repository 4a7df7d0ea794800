"""Scene selection and cloud masks on the demo series: all scenes, cloud ceilings of 80 % and 50 %, SCL masks.

Run: .venv/bin/python bench/bench_selection.py [--series data/sample] [--ceilings 80,50] [--tile-size 1024]
[--repeat 3] [--ceiling 3]

For each selection, side by side in one run, over the whole series' window grid:

* scenes kept and dropped (the ItemCollection's eo:cloud_cover, as fanout selects them);
* bytes read (compressed blocks, from compute_tile's TileStats) and seconds (compute_tile over
  every window, one after the other, as median workers would in sum; the best of --repeat runs,
  masked and unmasked runs taking turns, so that both see the same machine);
* the composite's distance to the ground truth: the share of valid pixels within 10 (and 20) of
  it on every band, the same measure tests/test_sample.py uses;
* the same with each scene's SCL mask (the items' ``scl`` asset, classes 0, 1, 3, 8, 9 and 10
  dropped, as ``"mask": {"asset": "scl"}`` asks) against the true-colour rule alone (0 or 255 in
  any band), same scenes. Goal (issue 20): at least 90 % within 10 with the mask;
* masked against unmasked seconds, same scenes (an SCL on the scene's grid at 20 m is read as a
  plain window, not warped: temporal_median.raster.mask);
* with --ceiling STEP, on one pixel in STEP x STEP, what limits the measure: the same composite
  with the TCI rule and with the SCL, then with the generator's own knowledge of which samples
  are clean (a perfect mask), the same clean samples without sensor noise, and every date
  without noise (the truth's own samples), all against the same ground truth (see
  temporal_median_cli.sample.oracle).

The series is the demo's (``make sample``: 108 x 2600 x 2200 with its items.json and
truth/ground_truth.tif); it is generated into --series if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporal_median.base.grid import Grid  # noqa: E402
from temporal_median.compute.tile import compute_tile  # noqa: E402
from temporal_median.job.masks import Mask  # noqa: E402
from temporal_median.scenes.items import scene_from_item  # noqa: E402
from temporal_median.scenes.selection import Selection, select  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default=str(ROOT / "data" / "sample"))
    parser.add_argument("--ceilings", default="80,50", help="max_cloud values to compare with all scenes")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="runs per selection; the fastest counts")
    parser.add_argument("--ceiling", type=int, default=0, metavar="STEP",
                        help="also the error decomposition with perfect masks, on one pixel in STEP x STEP (e.g. 3)")
    return parser.parse_args(argv)


def ensure_series(folder: Path) -> None:
    if (folder / "items.json").exists() and (folder / "truth" / "ground_truth.tif").exists():
        return
    from temporal_median_cli.sample import main as sample_main

    print(f"generating the demo series in {folder} (about 20 s)", flush=True)
    sample_main([str(folder)])


#: Goal (issue 20): share of the truth's pixels within 10 of the SCL-masked composite.
MASK_GOAL = 0.90


def composite(urls: list[str], tile_size: int, workdir: str, masks=None) -> tuple[np.ndarray, int, float]:
    """The composite of ``urls`` (4, h, w), computed window by window; bytes read and seconds."""
    with rasterio.open(urls[0]) as ds:
        width, height = ds.width, ds.height
    out = np.zeros((4, height, width), np.uint8)
    bytes_read, seconds = 0, 0.0
    for tile, window in Grid(width, height, tile_size).windows():
        path = os.path.join(workdir, f"{tile}.tif")
        started = time.perf_counter()
        stats = compute_tile(urls, window, path, masks=masks, exclude=Mask().exclude if masks else ())
        seconds += time.perf_counter() - started
        bytes_read += stats.bytes_read
        with rasterio.open(path) as ds:
            out[:, window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width] = ds.read()
    return out, bytes_read, seconds


def closeness(result: np.ndarray, truth: np.ndarray, within: int) -> float:
    """Share of the truth's valid pixels where the composite is within ``within`` on every band."""
    valid = (truth > 0).all(axis=0) & (result[3] > 0)
    diff = np.abs(result[:3].astype(np.int16) - truth.astype(np.int16)).max(axis=0)
    total = (truth > 0).all(axis=0).sum()
    return float(((diff <= within) & valid).sum() / max(total, 1))


def ceiling(folder: Path, urls: list[str], masks: list[str], truth: np.ndarray, step: int) -> list[tuple]:
    """(label, within 10, within 20) on one pixel in ``step`` x ``step``: the measure's ceiling with perfect masks."""
    from temporal_median.compute.median import compute_median
    from temporal_median_cli.sample import SeriesInfo
    from temporal_median_cli.sample.oracle import oracle

    series = SeriesInfo.load(str(folder))
    if series is None or [os.path.basename(u) for u in urls] != [s.name for s in series.scenes]:
        raise SystemExit(f"--ceiling needs the generated series' series.json in {folder}, its scenes in order")
    rows, cols = np.arange(0, series.height, step), np.arange(0, series.width, step)
    known = oracle(series, rows, cols)
    scenes = np.empty_like(known.ground)
    scl_excluded = np.empty_like(known.clean)
    for t, (url, mask) in enumerate(zip(urls, masks)):
        with rasterio.open(url) as ds:
            scenes[t] = ds.read()[:, rows][:, :, cols]
        with rasterio.open(mask) as ds:  # the 20 m class holding each 10 m pixel's centre
            scl_excluded[t] = np.isin(ds.read(1)[np.ix_(rows // 2, cols // 2)], Mask().exclude)
    sub_truth = truth[:, rows][:, :, cols]

    def score(label, stack, dropped=None):
        if dropped is not None:
            stack = np.where(dropped[:, None], np.uint8(0), stack)
        result = compute_median(stack, "luminance")
        rgba = np.concatenate([result.rgb, (result.count > 0)[None].astype(np.uint8)])
        return label, closeness(rgba, sub_truth, 10), closeness(rgba, sub_truth, 20), float(result.count.mean())

    return [
        score("(a) TCI rule alone", scenes),
        score("(b) SCL mask", scenes, scl_excluded),
        score("(c) perfect mask", scenes, ~known.clean),
        score("(d) perfect mask, no noise", known.noise_free, ~known.clean),
        score("(e) every date, no noise", known.noise_free),
        score("(f) every date, noise", known.ground),
    ]


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = Path(args.series).resolve()
    ensure_series(folder)
    items = json.loads((folder / "items.json").read_text())["features"]
    scenes = tuple(scene_from_item(item, "visual", str(folder / "items.json")) for item in items)
    with rasterio.open(folder / "truth" / "ground_truth.tif") as ds:
        truth = ds.read((1, 2, 3))
    configs = [("all scenes", Selection())] + [
        (f"max_cloud {c}", Selection(max_cloud=float(c))) for c in args.ceilings.split(",") if c
    ]
    configs += [(f"{name} + SCL", selection) for name, selection in configs]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-selection-") as workdir:
        for _ in range(max(1, args.repeat)):
            for plain in range(len(configs) // 2):  # each selection unmasked then masked, in turn
                for name, selection in (configs[plain], configs[plain + len(configs) // 2]):
                    chosen = select(scenes, selection)
                    masks = [Mask().url_of(s, os.path.exists) for s in chosen.kept] if name.endswith("SCL") else None
                    result, bytes_read, seconds = composite(list(chosen.urls), args.tile_size, workdir, masks)
                    if name in rows:
                        rows[name] = rows[name][:4] + (min(rows[name][4], seconds),) + rows[name][5:]
                    else:
                        rows[name] = (name, len(chosen.kept), len(chosen.dropped), bytes_read, seconds,
                                      closeness(result, truth, 10), closeness(result, truth, 20))
    rows = [rows[name] for name, _ in configs]
    print(f"demo series {folder} ({len(scenes)} scenes), windows of {args.tile_size}, {os.cpu_count()} cores, "
          f"best of {max(1, args.repeat)} runs")
    print(f"{'selection':<20} {'kept':>5} {'dropped':>8} {'MB read':>9} {'seconds':>8} {'x all':>6} {'within 10':>10} {'within 20':>10}")
    base_seconds = rows[0][4]
    for name, kept, dropped, bytes_read, seconds, w10, w20 in rows:
        print(f"{name:<20} {kept:>5} {dropped:>8} {bytes_read / 1e6:>9.1f} {seconds:>8.2f} {seconds / base_seconds:>6.2f} "
              f"{w10:>10.1%} {w20:>10.1%}")
    masked = {name[:-6]: row for name, *row in rows if name.endswith("SCL")}
    plain = {name: row for name, *row in rows if not name.endswith("SCL")}
    print("within 10, SCL mask vs the true-colour rule, same scenes: "
          + ", ".join(f"{name} {masked[name][4]:.1%} vs {plain[name][4]:.1%}" for name in masked))
    print("seconds, SCL mask vs the true-colour rule, same scenes: "
          + ", ".join(f"{name} {masked[name][3]:.2f} vs {plain[name][3]:.2f} ({masked[name][3] / plain[name][3]:.2f}x)"
                      for name in masked))
    best = masked["all scenes"][4]
    print(f"goal: at least {MASK_GOAL:.0%} within 10 with the SCL mask: {best:.1%}, {'met' if best >= MASK_GOAL else 'NOT met'}")
    if args.ceiling:
        urls = [s.url for s in scenes]
        decomposition = ceiling(folder, urls, [Mask().url_of(s, os.path.exists) for s in scenes], truth, args.ceiling)
        print(f"what limits it, all scenes, one pixel in {args.ceiling} x {args.ceiling}, against the same ground truth:")
        for label, w10, w20, valid in decomposition:
            print(f"  {label:<30} within 10 {w10:6.1%}  within 20 {w20:6.1%}  valid samples per pixel {valid:5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
