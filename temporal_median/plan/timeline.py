"""A job's timeline as a PNG: a row per instance with a bar per attempt, the mosaic, and the tiles done over time."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporal_median.base.clock import parse_time

#: Bar colours by outcome; failed ones also hatched, refusals in a row of their own.
COLORS = {
    "written": "#4c72b0", "already-done": "#8c8c8c", "retried": "#dd8452", "failed": "#c44e52",
    "exhausted": "#c44e52", "unfinished": "#937860", "refused-429": "#c44e52",
}
HATCHES = {"retried": "//", "failed": "xx", "exhausted": "xx", "unfinished": "..", "refused-429": "xx"}
MOSAIC_COLOR = "#55a868"
REFUSED_ROW = "refused (429)"
MOSAIC_ROW = "mosaic"
DPI = 100


@dataclass
class Timeline:
    """A job record's attempts as seconds from the job's start (the POST, else the manifest)."""

    rows: dict = field(default_factory=dict)  # label -> [(start, seconds, outcome)]
    mosaic: tuple | None = None  # (start, end)
    done: list = field(default_factory=list)  # seconds at which each tile was first written
    end: float = 0.0
    title: str = ""


def timeline_of(record: dict) -> Timeline:
    """The rows, the mosaic's span and the tiles-done times of a job record (job.json or a
    simulated one: :meth:`temporal_median.plan.model.Simulation.to_record`)."""
    attempts = record.get("attempts") or []
    starts = [parse_time(a["started"]) for a in attempts if a.get("started")]
    origin_text = record.get("posted") or record.get("created")
    origin = parse_time(origin_text) if origin_text else min(starts)
    completed = parse_time(record["completed"]) if record.get("completed") else None

    def seconds(text) -> float | None:
        return (parse_time(text) - origin).total_seconds() if text else None

    timeline = Timeline()
    by_tile: dict[str, list] = {}
    for a in attempts:
        by_tile.setdefault(a["tile"], []).append(a)
    for tile_attempts in by_tile.values():
        tile_attempts.sort(key=lambda a: a.get("started") or "")
    end_all = seconds(record.get("completed")) or 0.0
    for tile, tile_attempts in by_tile.items():
        first_written = None
        for index, a in enumerate(tile_attempts):
            start = seconds(a.get("started"))
            if start is None:
                continue
            stop = seconds(a.get("ended"))
            if stop is None:  # it never ended: until the tile's next attempt, or the job's end
                later = [seconds(b["started"]) for b in tile_attempts[index + 1:] if b.get("started")]
                stop = later[0] if later else end_all
            outcome = a.get("outcome") or "unfinished"
            label = REFUSED_ROW if outcome == "refused-429" else _short(a.get("instance"))
            timeline.rows.setdefault(label, []).append((start, max(stop - start, 0.0), outcome))
            if outcome in ("written", "already-done") and first_written is None:
                first_written = stop
        if first_written is not None:
            timeline.done.append(first_written)
    timeline.done.sort()
    mosaic_start = record.get("mosaic_started")
    if mosaic_start is None and completed is not None and record.get("seconds_mosaic") is not None:
        mosaic_start_s = end_all - float(record["seconds_mosaic"])
    else:
        mosaic_start_s = seconds(mosaic_start)
    if mosaic_start_s is not None and completed is not None:
        timeline.mosaic = (mosaic_start_s, end_all)
    ends = [s + d for bars in timeline.rows.values() for s, d, _ in bars] + [end_all]
    timeline.end = max(ends) if ends else 1.0
    kind = "simulated" if record.get("simulated") else "measured"
    name = record.get("job_id", "job")
    timeline.title = (f"{name} ({kind}): {record.get('tiles', len(by_tile))} tiles, "
                      f"{sum(1 for r in timeline.rows if r != REFUSED_ROW)} instances, {end_all:.1f} s")
    return timeline


def _short(instance: str | None) -> str:
    """An instance id without its revision (``median-00001-loc/host:123:ab12cd`` -> ``host:123:ab12cd``)."""
    return (instance or "unknown").rsplit("/", 1)[-1]


def draw_timeline(record: dict, path: str) -> dict:
    """Draw ``record``'s timeline into the PNG ``path``.

    Parameters
    ----------
    record : dict
        A job record with ``attempts`` (job.json, or a simulated one).
    path : str
        Where the PNG goes.

    Returns
    -------
    dict
        ``width``, ``height`` in pixels, and ``rows``: per row its ``label``, ``top`` and
        ``bottom`` pixel rows, and the plot's ``left`` and ``right`` pixel columns (for checks).
    """
    # matplotlib loads only when a timeline is drawn (after the mosaic's record), never at cold start.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    timeline = timeline_of(record)
    instance_rows = sorted((r for r in timeline.rows if r != REFUSED_ROW), key=lambda r: min(s for s, _, _ in timeline.rows[r]))
    labels = ([REFUSED_ROW] if REFUSED_ROW in timeline.rows else []) + instance_rows + [MOSAIC_ROW]
    height_in = 2.4 + 0.28 * len(labels)
    figure = Figure(figsize=(11, height_in), dpi=DPI)
    canvas = FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 1, height_ratios=[max(2.0, 0.28 * len(labels)), 1.4], hspace=0.08)
    bars, curve = figure.add_subplot(grid[0]), figure.add_subplot(grid[1])
    positions = {label: len(labels) - 1 - i for i, label in enumerate(labels)}
    for label in labels[:-1]:
        for start, seconds, outcome in timeline.rows[label]:
            bars.broken_barh([(start, max(seconds, timeline.end * 0.002))], (positions[label] - 0.4, 0.8),
                             facecolors=COLORS.get(outcome, "#333333"), edgecolor="black", linewidth=0.3,
                             hatch=HATCHES.get(outcome))
    if timeline.mosaic:
        start, stop = timeline.mosaic
        bars.broken_barh([(start, max(stop - start, timeline.end * 0.002))], (positions[MOSAIC_ROW] - 0.4, 0.8),
                         facecolors=MOSAIC_COLOR, edgecolor="black", linewidth=0.3)
        curve.axvspan(start, stop, color=MOSAIC_COLOR, alpha=0.25)
    bars.set_yticks(list(positions.values()), list(positions.keys()), fontsize=7)
    bars.set_ylim(-0.6, len(labels) - 0.4)
    bars.set_xlim(0, timeline.end * 1.02)
    bars.tick_params(labelbottom=False)
    bars.set_title(timeline.title, fontsize=9)
    outcomes = sorted({o for bars_ in timeline.rows.values() for _, _, o in bars_})
    handles = [Patch(facecolor=COLORS.get(o, "#333333"), hatch=HATCHES.get(o), label=o) for o in outcomes]
    handles.append(Patch(facecolor=MOSAIC_COLOR, label="mosaic"))
    bars.legend(handles=handles, fontsize=7, loc="upper left", ncol=len(handles))
    counts = list(range(1, len(timeline.done) + 1))
    curve.step([0.0] + timeline.done, [0] + counts, where="post", color="#4c72b0")
    curve.set_xlim(0, timeline.end * 1.02)
    curve.set_ylim(0, max(1, len(counts)) * 1.05)
    curve.yaxis.set_major_locator(MaxNLocator(integer=True))
    curve.set_xlabel("seconds from " + ("the POST" if record.get("posted") else "the manifest"), fontsize=8)
    curve.set_ylabel("tiles done", fontsize=8)
    curve.tick_params(labelsize=7)
    # Margins in inches (title above, the time axis's label below), whatever the figure's height.
    figure.subplots_adjust(left=0.16, right=0.98, top=1 - 0.35 / height_in, bottom=0.5 / height_in)
    canvas.draw()
    width, height = canvas.get_width_height()
    to_pixels = bars.transData.transform
    left = int(to_pixels((0, 0))[0])
    right = int(to_pixels((timeline.end * 1.02, 0))[0])
    rows = []
    for label, y in positions.items():
        top = height - to_pixels((0, y + 0.4))[1]
        bottom = height - to_pixels((0, y - 0.4))[1]
        rows.append({"label": label, "top": int(round(top)), "bottom": int(round(bottom))})
    figure.savefig(path, dpi=DPI, facecolor="white")
    return {"path": path, "width": width, "height": height, "left": left, "right": right, "rows": rows}
