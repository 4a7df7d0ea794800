"""Draw the benchmark figures of docs/benchmarks.md into docs/assets/ (matplotlib, Agg).

    .venv/bin/python docs/assets/make_figures.py

The figures are data written below, copied from the benchmark runs docs/benchmarks.md reports: each
block names the bench script and the date of its run. Re-running a bench does not change them:
update the numbers here (and in docs/benchmarks.md) and run this script again.

pipeline.svg is drawn by hand; timeline.png comes from a real job
(`temporal-median timeline job.json -o docs/assets/timeline.png`), not from this script.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)

HERE = Path(__file__).resolve().parent
DPI = 100
OURS, PEER, GOAL = "#00796b", "#9e9e9e", "#bf360c"

# ---------------------------------------------------------------------------------------------
# bench/bench_area.py, 2026-12-03 (2 cores, load 4-6): 3 tiles of 24 dates x 1000² in UTM zones
# 30/31 (72 scenes) onto one 1935 x 1965 grid in EPSG:32631, per-band.
# ---------------------------------------------------------------------------------------------
AREA = {
    "seconds": {"ours": 5.0, "odc-stac + dask": 40.0},
    "peak memory (MB)": {"ours": 362, "odc-stac + dask": 2707},
}

# ---------------------------------------------------------------------------------------------
# Speed-ups against a peer, measured side by side in one run (higher is better), with the goal.
# bench/bench_kernel.py, 2026-12-01: one 216 x 1024 x 1024 window, 36% invalid samples.
# bench/bench_xarray.py, 2026-12-01: the per-band composite of 32 scenes, xarray/rioxarray + dask.
# bench/bench_area.py, 2026-12-03: as above.
# ---------------------------------------------------------------------------------------------
SPEEDUPS = [
    # (label, ratio, goal)
    ("kernel, luminance\nvs the course's numba median", 51, 30),
    ("kernel, per-band\nvs numpy.ma", 372, 100),
    ("per-band composite, 2048 px\nvs xarray + dask", 11.5, 10),
    ("per-band composite, 3072 px\nvs xarray + dask", 15.0, 10),
    ("area, time\nvs odc-stac + dask", 8.1, 5),
    ("area, memory\nvs odc-stac + dask", 7.5, 5),
]

# ---------------------------------------------------------------------------------------------
# Time against a floor (lower is better; 1.0 = the floor), with the goal.
# bench/bench_tile.py, 2026-12-01: compute_tile vs a pure rasterio read of the same window.
# bench/bench_e2e.py, 2026-12-01: POST to the job record vs a pure read of all inputs, 2 cores.
# bench/bench_periods.py, 2026-12-03: the 12-month job's tiles phase vs its floor.
# ---------------------------------------------------------------------------------------------
OVERHEADS = [
    # (label, ratio, goal)
    ("tile, DEFLATE 512-px blocks\nvs a pure read", 1.02, 1.15),
    ("tile, DEFLATE 1024-px blocks\nvs a pure read", 0.99, 1.15),
    ("tile, JPEG q75 1024-px blocks\nvs a pure read", 1.01, 1.15),
    ("end to end, 216 x 4096² job\nvs a pure read", 1.45, 1.5),
    ("end to end, demo job\nvs a pure read", 1.76, 1.5),
    ("12 periods, tiles phase\nvs its floor", 1.34, 1.15),
]


def area_figure(path: Path) -> None:
    figure = Figure(figsize=(8, 3), dpi=DPI)
    axes = figure.subplots(1, 2)
    for ax, (title, values) in zip(axes, AREA.items()):
        names = list(values)
        bars = ax.barh(names, [values[n] for n in names], color=[OURS, PEER])
        ax.invert_yaxis()
        ax.set_title(title, fontsize=11)
        ax.bar_label(bars, labels=[f"{values[n]:,.1f}" if isinstance(values[n], float) else f"{values[n]:,}"
                                   for n in names], padding=3, fontsize=10)
        ax.set_xlim(0, max(values.values()) * 1.25)
        ax.spines[["top", "right"]].set_visible(False)
    figure.suptitle("An area over 3 tiles and 2 UTM zones (72 scenes): 8.1x faster, 7.5x less memory",
                    fontsize=11)
    figure.tight_layout()
    figure.savefig(path, facecolor="white")


def _ratio_panel(ax, rows, title, xlabel, higher_is_better: bool, log: bool) -> None:
    labels = [r[0] for r in rows]
    ratios = [r[1] for r in rows]
    goals = [r[2] for r in rows]
    met = [(r >= g) if higher_is_better else (r <= g) for r, g in zip(ratios, goals)]
    y = range(len(rows))
    ax.barh(list(y), ratios, color=[OURS if m else PEER for m in met], height=0.6)
    for i, goal in enumerate(goals):
        ax.plot([goal, goal], [i - 0.4, i + 0.4], color=GOAL, linewidth=2.5)
    for i, (ratio, goal, ok) in enumerate(zip(ratios, goals, met)):
        # The label right of both the bar and the goal's tick, so neither hides it.
        right = max(ratio, goal)
        x = right * 1.15 if log else right + 0.03
        ax.text(x, i, f"{ratio:g}x" + ("" if ok else "  (goal not met)"), va="center", fontsize=9)
    ax.set_yticks(list(y), labels, fontsize=9)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlim(1, max(ratios) * 8)
    else:
        ax.set_xlim(0, max(ratios + goals) * 1.45)
        ax.axvline(1.0, color="#616161", linewidth=1, linestyle=":")
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)


def ratios_figure(path: Path) -> None:
    figure = Figure(figsize=(9, 7), dpi=DPI)
    top, bottom = figure.subplots(2, 1)
    _ratio_panel(top, SPEEDUPS, "Faster than a peer, in one run (higher is better)",
                 "times faster or less memory (log scale); red tick: the goal", True, True)
    _ratio_panel(bottom, OVERHEADS, "Time against a floor (lower is better; 1 = the floor)",
                 "time / floor; red tick: the goal", False, False)
    figure.tight_layout()
    figure.savefig(path, facecolor="white")


def main() -> None:
    area_figure(HERE / "bench-area.png")
    ratios_figure(HERE / "bench-ratios.png")
    for name in ("bench-area.png", "bench-ratios.png"):
        print(f"{HERE / name}: {(HERE / name).stat().st_size // 1024} kB")


if __name__ == "__main__":
    main()
