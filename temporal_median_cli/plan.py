"""`temporal-median plan INPUT | --geometry SxWxH`: a job's windows, bytes, predicted wall time and cost; nothing runs."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace

from .options import add_job_options, request_body

_GEOMETRY = re.compile(r"^(\d+)x(\d+)x(\d+)$")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="temporal-median plan",
        description="Plan a job without running it: windows, scenes and bytes per window, and its wall time "
        "(POST to job.json) and cost as deployed, from a simulation of the pipeline. Nothing is published "
        "or written.",
    )
    parser.add_argument("input", nargs="?", help="a directory of GeoTIFFs, a gs:// prefix or a STAC ItemCollection "
                        "(.json), as `run` takes it")
    parser.add_argument("--geometry", metavar="SxWxH", help="plan without inputs: SCENES x WIDTH x HEIGHT, e.g. "
                        "216x10980x10980 (a granule)")
    parser.add_argument("--bytes-per-window", type=int, help="with --geometry: compressed bytes a full window reads "
                        "(default: the measured ratio of the course's granule)")
    add_job_options(parser)
    deployed = parser.add_argument_group("deployment (default: terraform/variables.tf's defaults)")
    deployed.add_argument("--max-instances", type=int, help="median_max_instances")
    deployed.add_argument("--concurrency", type=int, help="median_concurrency")
    deployed.add_argument("--cpu", type=float, help="median_cpu (its memory: the least Cloud Run allows for "
                          "2 GiB per concurrent window)")
    deployed.add_argument("--read-threads", type=int, help="read_threads (TM_READ_THREADS)")
    parser.add_argument("--recommend", action="store_true", help="also simulate a few median settings "
                        "(max instances, concurrency, vCPUs) and recommend one")
    parser.add_argument("--usd-goal", type=float, default=0.10, help="with --recommend: the cost not to exceed")
    parser.add_argument("--max-median-vcpus", type=float, help="with --recommend: median's share of the region's "
                        "Cloud Run CPU quota (max instances x vCPUs stays within it)")
    parser.add_argument("--timeline", metavar="PNG", help="draw the simulated run's timeline into PNG")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    return parser


def deployment_of(args):
    """Terraform's defaults (with this environment's TM_* instance sizes) and the flags' changes."""
    from temporal_median.base.settings import Settings
    from temporal_median.plan.deployment import Deployment

    deployment = Deployment.from_settings(Settings.from_env())
    if args.max_instances or args.concurrency or args.cpu:
        deployment = deployment.with_median(args.max_instances or deployment.median_max_instances,
                                            args.concurrency or deployment.median_concurrency,
                                            args.cpu or deployment.median_cpu)
    if args.read_threads:
        deployment = replace(deployment, read_threads=args.read_threads)
    return deployment


def plan_input(args, deployment):
    """The plan of a real job: its scenes chosen and placed as fanout places them (an area's
    layout included), then planned."""
    from temporal_median.base.settings import Settings
    from temporal_median.functions.fanout import choose_scenes, place
    from temporal_median.job.request import JobRequest
    from temporal_median.plan.plan import plan_job

    settings = replace(Settings.from_env(), allow_local_paths=True)
    request = JobRequest.from_json(request_body(args), settings)
    chosen = choose_scenes(request, settings)
    datasets, raster, grid, layout = place(chosen, request, settings)
    return plan_job(datasets, raster, grid, settings, method=request.method, deployment=deployment, layout=layout)


def _range(figures: dict) -> str:
    """``12-36``, or ``36`` when every window reads as many scenes (a granule)."""
    low, high = figures["min"], figures["max"]
    return f"{high}" if low == high else f"{low}-{high}"


def describe(plan) -> list[str]:
    """The plan in a few lines: windows and bytes, the deployment, the prediction and its bound."""
    info = plan.to_dict()
    d = plan.deployment
    per = info["bytes_per_window"]
    lines = [
        f"plan: {info['windows']} windows of {info['tile_size']} px over {info['width']} x {info['height']} px, "
        f"{_range(info['scenes_per_window'])} scenes per window ({info['method']}); "
        f"{info['bytes_to_read'] / 1e6:,.1f} MB to read",
        f"  per window: median {per['median'] / 1e6:.1f} MB (min {per['min'] / 1e6:.1f}, max {per['max'] / 1e6:.1f}), "
        f"from {info['bytes_source']}",
        f"deployment: median {d.median_max_instances} instances x concurrency {d.median_concurrency}, "
        f"{d.median_cpu:g} vCPU / {d.median_memory_gib:g} GiB, {d.read_threads} reading threads; mosaic "
        f"{d.mosaic_cpu:g} vCPU / {d.mosaic_memory_gib:g} GiB; push backoff {d.push_min_backoff_s:g}-"
        f"{d.push_max_backoff_s:g} s",
    ]
    lines += describe_prediction(plan.simulation)
    assumed = [f"{name} {p.value:g} {p.unit}" for name, p in plan.parameters.table.items()
               if p.source.startswith("assumed")]
    lines.append("assumed (no published figure, nothing here measures it): " + ", ".join(assumed))
    return lines


def describe_prediction(simulation, indent: str = "") -> list[str]:
    pred = simulation.to_dict()
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(pred["breakdown_seconds"].items(), key=lambda kv: -kv[1]))
    usd = simulation.cost["usd"]
    return [
        f"{indent}predicted: {pred['wall_seconds']:.1f} s from POST to job.json, ${pred['usd_total']:.4f}; "
        f"bound by {pred['bound']}",
        f"{indent}  along the last window's path: {parts}",
        f"{indent}  {pred['executed_attempts']} executed attempts ({pred['seconds_per_window']:.2f} s each), "
        f"{pred['refused_429']} pushes refused (429), {pred['cold_starts']} cold starts, "
        f"{pred['peak_instances']} instances at most",
        f"{indent}  cost: " + ", ".join(f"{k} ${v:.4f}" for k, v in usd.items()),
    ]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.input) == bool(args.geometry):
        parser.error("give INPUT or --geometry SxWxH (one of them)")
    deployment = deployment_of(args)
    if args.geometry:
        match = _GEOMETRY.match(args.geometry)
        if not match:
            parser.error(f"--geometry must be SCENESxWIDTHxHEIGHT, e.g. 216x10980x10980, got {args.geometry!r}")
        from temporal_median.plan.plan import plan_geometry

        scenes, width, height = (int(v) for v in match.groups())
        plan = plan_geometry(scenes, width, height, args.tile_size, bytes_per_window=args.bytes_per_window,
                             method=args.method, deployment=deployment)
    else:
        from temporal_median.base.errors import TemporalMedianError

        try:
            plan = plan_input(args, deployment)
        except (TemporalMedianError, ValueError) as exc:
            print(f"temporal-median plan: {exc}", file=sys.stderr)
            return 1
    output = plan.to_dict()
    lines = describe(plan)
    if args.recommend:
        from temporal_median.plan.recommend import recommend

        best, tried = recommend(plan.shape, plan.deployment, plan.parameters, usd_goal=args.usd_goal,
                                max_median_vcpus=args.max_median_vcpus)
        output["recommended"] = {**best.to_dict(), "tried": [c.to_dict() for c in tried]}
        lines.append(f"settings tried ({len(tried)}), fastest first:")
        lines += [f"  max instances {c['median_max_instances']:4d}, concurrency {c['median_concurrency']}, "
                  f"{c['median_cpu']:g} vCPU / {c['median_memory_gib']:g} GiB, mosaic {c['mosaic_cpu']:g} vCPU: "
                  f"{c['wall_seconds']:6.1f} s, "
                  f"${c['usd_total']:.4f}, bound by {c['bound']}" for c in (t.to_dict() for t in tried)]
        r = best.deployment
        lines.append(f"recommended (fastest within ${args.usd_goal:g}, cheapest within 5% of it): max instances "
                     f"{r.median_max_instances}, concurrency {r.median_concurrency}, {r.median_cpu:g} vCPU / "
                     f"{r.median_memory_gib:g} GiB; mosaic {r.mosaic_cpu:g} vCPU / {r.mosaic_memory_gib:g} GiB")
        lines += describe_prediction(best.simulation, "  ")
    if args.timeline:
        from temporal_median.plan.timeline import draw_timeline

        draw_timeline(plan.simulation.to_record(), args.timeline)
        lines.append(f"simulated timeline: {args.timeline}")
    lines.append("nothing was published or written" + (" (but the timeline)." if args.timeline else "."))
    print(json.dumps(output, indent=2) if args.json else "\n".join(lines))
    return 0
