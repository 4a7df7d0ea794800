"""The plan: the simulator's invariants, the parameter table, and plans of real inputs that write nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import hcl2
import pytest
from pipeline_support import make_series

from temporal_median.base.grid import Grid
from temporal_median.base.settings import Settings
from temporal_median.job.cost import PRICES, Usage
from temporal_median.plan.deployment import TERRAFORM_DEFAULTS, Deployment, fit_memory
from temporal_median.plan.model import CATEGORIES, JobShape, WindowShape
from temporal_median.plan.parameters import PARAMETERS, Parameters
from temporal_median.plan.plan import plan_geometry, plan_job
from temporal_median.plan.recommend import recommend
from temporal_median.plan.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
MEGAPIXEL = 1024 * 1024


def job(windows: int, scenes: int = 100, nbytes: int = 50_000_000) -> JobShape:
    return JobShape(tuple(WindowShape(f"r000_c{i:03d}", MEGAPIXEL, scenes, nbytes) for i in range(windows)),
                    message_bytes=windows * 6000)


#: Round figures, so a test can add the parts of a run up by hand.
SIMPLE = Parameters().replace(
    "test", push_latency_s=0.5, cold_start_s=3.0, first_request_extra_s=0.25, storage_latency_s=0.01,
    storage_instance_Bps=50e6, decode_s_per_sample=1e-8, kernel_s_per_sample_luminance=0.0, scene_s=0.0,
    write_s_per_pixel=1e-7, request_cpu_s=0.0, event_latency_s=1.0, mosaic_event_s=0.1, mosaic_fixed_s=0.4,
    mosaic_cpu_s_per_pixel=1e-6, mosaic_threads=2.0, tile_bytes_per_pixel=2.0, cog_bytes_per_tile_byte=1.5,
    fanout_fixed_s=0.1, fanout_scene_s=0.001, publish_s=0.001, reads_per_scene=2, median_storage_requests=5,
    mosaic_storage_requests=8,
)


def test_every_parameter_says_where_it_comes_from():
    kinds = ("measured:", "published:", "configured:", "assumed:")
    assert all(p.source.startswith(kinds) and p.unit for p in PARAMETERS.values())
    # What Google publishes is cited by its page.
    assert all("https://cloud.google.com/" in p.source for p in PARAMETERS.values() if p.source.startswith("published"))
    changed = Parameters().replace("measured: here", cold_start_s=1.5)
    assert changed.cold_start_s == 1.5 and changed.table["cold_start_s"].source == "measured: here"
    assert Parameters().cold_start_s == PARAMETERS["cold_start_s"].value
    with pytest.raises(KeyError):
        Parameters().replace("x", no_such_parameter=1)


def test_terraform_defaults_are_the_variables_files():
    with open(ROOT / "terraform" / "variables.tf") as f:
        variables = {name.strip('"'): body for block in hcl2.load(f)["variable"] for name, body in block.items()}
    for variable, (_field, default) in TERRAFORM_DEFAULTS.items():
        assert str(variables[variable]["default"]).strip('"') == str(default), variable
    deployed = Deployment.terraform().to_dict()
    for variable, (field, default) in TERRAFORM_DEFAULTS.items():
        value = str(variables[variable]["default"]).strip('"')
        assert deployed[field] == (float(value.rstrip("Gi")) if field.endswith(("_gib", "_cpu")) else int(value))
    # The dataclass's own defaults are Terraform's too.
    assert Deployment() == Deployment.terraform()


@pytest.mark.parametrize("cpu, at_least, gib", [(1, 2, 2), (1, 4, 4), (2, 4, 4), (4, 1, 2), (8, 2, 4), (2, 6, 8)])
def test_memory_fits_cloud_runs_table(cpu, at_least, gib):
    assert fit_memory(cpu, at_least) == gib


def test_memory_beyond_four_gib_per_vcpu_is_refused():
    with pytest.raises(ValueError):
        fit_memory(1, 8)


def test_a_job_of_one_window_is_a_cold_start_a_window_and_the_mosaic():
    one = job(1, scenes=100, nbytes=50_000_000)
    deployment = Deployment.terraform()
    sim = simulate(one, deployment, SIMPLE)
    p = SIMPLE
    fanout = p.fanout_fixed_s + 100 * p.fanout_scene_s + 7 * p.storage_latency_s + p.storage_latency_s + p.publish_s
    checks = 4 * p.storage_latency_s + p.first_request_extra_s
    # 100 scenes x 2 reads over 16 threads, 50 MB at 50 MB/s; 1.05 CPU-s on 1 vCPU: CPU bound.
    read = max(13 * p.storage_latency_s, 1.0, MEGAPIXEL * 100 * p.decode_s_per_sample / 1.0)
    write = MEGAPIXEL * p.write_s_per_pixel
    upload = max(p.storage_latency_s, 2 * MEGAPIXEL / 50e6)
    window = checks + read + write + upload
    tiles = 2 * MEGAPIXEL
    mosaic = (p.cold_start_s + p.mosaic_event_s + 8 * p.storage_latency_s + max(p.storage_latency_s, tiles / 50e6)
              + (p.mosaic_fixed_s + MEGAPIXEL * p.mosaic_cpu_s_per_pixel) / deployment.mosaic_cpu
              + max(3 * p.storage_latency_s, 1.5 * tiles / 50e6) + p.storage_latency_s)
    expected = fanout + p.push_latency_s + p.cold_start_s + window + p.event_latency_s + mosaic
    assert sim.complete and sim.wall_s == pytest.approx(expected, rel=1e-6)
    assert sim.figures["cold_starts"] == 1 and sim.figures["refused_429"] == 0
    assert sim.breakdown["cold starts"] == pytest.approx(p.cold_start_s)
    assert sum(sim.breakdown.values()) == pytest.approx(sim.wall_s)
    assert set(sim.breakdown) == set(CATEGORIES) and sim.bound == max(sim.breakdown, key=sim.breakdown.get)


def test_the_cost_is_cost_pys_pricing_of_the_simulated_usage():
    sim = simulate(job(30), Deployment.terraform().with_median(10, 1, 2), SIMPLE)
    executed = [a for a in sim.attempts if a.number is not None]
    usage = sim.usage
    assert isinstance(usage, Usage) and usage.windows == len(executed) == 30
    assert usage.median_seconds == pytest.approx(sum(a.end - a.start for a in executed)
                                                 + sim.figures["cold_starts"] * SIMPLE.cold_start_s)
    assert (usage.median_cpu, usage.median_gib) == (2.0, 2.0)
    assert usage.input_reads == 2 * 100 * 30 and usage.bytes_read == 30 * 50_000_000
    assert sim.cost == usage.estimate()
    vcpu_s = usage.median_seconds * 2 + usage.mosaic_seconds * 2
    assert sim.cost["usd"]["cpu"] == pytest.approx(vcpu_s * PRICES["vcpu_second"], abs=1e-6)


@pytest.mark.parametrize("pending_timeout", [10.0, 1.0])
def test_more_instances_are_never_slower(pending_timeout):
    params = SIMPLE.replace("test", pending_timeout_s=pending_timeout)
    walls = [simulate(job(40), Deployment.terraform().with_median(n, 1, 1), params).wall_s
             for n in (1, 2, 4, 8, 16, 40, 80)]
    assert all(later <= earlier + 1e-9 for earlier, later in zip(walls, walls[1:])), walls
    assert walls[-1] < walls[0]


def test_pushes_beyond_instances_times_concurrency_are_refused_with_429():
    params = SIMPLE.replace("test", pending_timeout_s=1.0)
    # 2 instances x concurrency 1, windows of several seconds: pushes beyond 2 wait 1 s, then 429.
    small = simulate(job(20), Deployment.terraform().with_median(2, 1, 1), params)
    refused = [a for a in small.attempts if a.outcome == "refused-429"]
    assert refused and small.figures["refused_429"] == len(refused)
    assert all(a.end - a.start == pytest.approx(1.0) for a in refused)
    # Each refusal is a delivery: the window's later executed attempt has a higher delivery count.
    executed = {a.tile: a.delivery for a in small.attempts if a.number is not None}
    assert all(executed[a.tile] > a.delivery for a in refused)
    assert small.breakdown["429 refusals and backoff"] + small.breakdown["instances busy"] > 0
    # As many places as windows in flight, as instances or as concurrency: none refused.
    for instances, concurrency in ((20, 1), (10, 2)):
        roomy = simulate(job(20), Deployment.terraform().with_median(instances, concurrency, 2), params)
        assert roomy.figures["refused_429"] == 0 and roomy.figures["peak_push_window"] > 2


def test_a_window_refused_until_the_dead_letter_never_completes_the_job():
    # One instance for 30 windows; pushes beyond it are refused after 0.5 s; 5 deliveries at most.
    # Push flow control spaces the refusals (the window halves, the subscription pauses), yet
    # the window left waiting longest is refused 5 times and dead-lettered.
    params = SIMPLE.replace("test", pending_timeout_s=0.5)
    deployment = replace(Deployment.terraform().with_median(1, 1, 1), push_max_delivery_attempts=5,
                         push_min_backoff_s=0.1, push_max_backoff_s=0.2)
    sim = simulate(job(30), deployment, params)
    assert not sim.complete and sim.figures["dead_lettered"] > 0 and sim.bound == "dead letters"


def test_the_local_clouds_shared_cores_slow_instances_down():
    local = replace(Deployment.terraform(), median_max_instances=2, median_min_instances=2, host_cores=2.0,
                    read_threads=2, inputs_remote=False, push_max_window=2)
    alone = simulate(job(1), local, SIMPLE)
    pair = simulate(job(2), local, SIMPLE)
    # One window has both cores; two windows share them, each at half speed.
    read_alone = [a for a in alone.attempts if a.number][0].phases["read"]
    read_pair = [a for a in pair.attempts if a.number][0].phases["read"]
    assert read_pair == pytest.approx(2 * read_alone, rel=0.01)
    assert pair.figures["cold_starts"] == 0


def test_the_recommendation_is_the_fastest_affordable_setting():
    best, tried = recommend(job(24), Deployment.terraform(), SIMPLE, instances=(4, 24), concurrency=(1,),
                            cpus=(1.0, 2.0), mosaic_cpus=(2.0,), usd_goal=1.0)
    assert len(tried) == 4 and best in tried
    fastest = min(c.simulation.wall_s for c in tried)
    near = [c for c in tried if c.simulation.wall_s <= fastest * 1.05]
    assert best.simulation.usd == min(c.simulation.usd for c in near)
    # Nothing affordable: the cheapest setting.
    cheapest, _ = recommend(job(24), Deployment.terraform(), SIMPLE, instances=(4, 24), concurrency=(1,),
                            cpus=(1.0, 2.0), mosaic_cpus=(2.0,), usd_goal=0.0)
    assert cheapest.simulation.usd == min(c.simulation.usd for c in tried)


def test_a_granule_from_its_geometry_alone():
    plan = plan_geometry(216, 10980, 10980)
    info = plan.to_dict()
    assert info["windows"] == 121 and info["scenes_per_window"] == {"min": 216, "max": 216}
    assert info["bytes_to_read"] == pytest.approx(22e9, rel=0.01)  # the course's 22 GB
    assert info["prediction"]["complete"] and info["prediction"]["wall_seconds"] > 0
    given = plan_geometry(216, 10980, 10980, bytes_per_window=100_000_000).to_dict()
    assert given["bytes_per_window"]["max"] == 100_000_000
    json.dumps(info)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    directory = tmp_path_factory.mktemp("plan-sample")
    return directory, make_series(directory, scenes=8, width=1100, height=700, seed=5)


def test_the_plan_reads_each_windows_bytes_from_the_block_counts(sample, tmp_path):
    from temporal_median.compute.tile import compute_tile
    from temporal_median.raster.read import inspect_inputs

    _, paths = sample
    raster = inspect_inputs(paths)
    grid = Grid(raster.width, raster.height, 512)
    plan = plan_job(paths, raster, grid, Settings())
    assert len(plan.shape.windows) == len(grid) == 6
    for shape, (tile, window) in zip(plan.shape.windows, grid.windows()):
        assert shape.tile == str(tile) and shape.pixels == window.width * window.height and shape.scenes == 8
    # What compute_tile reports as bytes_read for the same window.
    tile, window = next(grid.windows())
    stats = compute_tile(paths, window, str(tmp_path / "tile.tif"))
    assert plan.shape.windows[0].bytes == stats.bytes_read > 0


def test_planning_writes_and_publishes_nothing(sample, monkeypatch, capsys):
    from temporal_median.base import storage
    from temporal_median_cli.plan import main

    directory, _ = sample
    before = {p: p.stat().st_mtime_ns for p in Path(directory).rglob("*")}

    def refuse(*args, **kwargs):
        raise AssertionError("the plan wrote or published something")

    for name in ("create_bytes", "create_json", "create_file", "put_file", "put_json", "delete",
                 "create_json_generation", "replace_json_if_generation"):
        monkeypatch.setattr(storage, name, refuse)
    from google.cloud import pubsub_v1

    monkeypatch.setattr(pubsub_v1.PublisherClient, "publish", refuse)
    monkeypatch.chdir(directory)
    assert main([str(directory), "--tile-size", "512", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["windows"] == 6 and plan["prediction"]["complete"]
    assert plan["bytes_to_read"] > 0 and plan["deployment"]["median_max_instances"] == TERRAFORM_DEFAULTS["median_max_instances"][1]
    after = {p: p.stat().st_mtime_ns for p in Path(directory).rglob("*")}
    assert after == before


def test_the_plan_loads_no_raster_library_until_it_opens_inputs():
    # fanout may import plan_job at its top: its cold start must stay free of GDAL and numba.
    import subprocess
    import sys

    code = ("import sys, temporal_median.plan.plan, temporal_median.plan.recommend; "
            "print(','.join(m for m in ('rasterio', 'numba', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


# -- areas: each window plans the scenes its layout gives it, each read in its own pixel space ---------------

#: The plan's bytes of a window may differ from what compute_area_tile reads by this share
#: (both take the same blocks: they agree to the byte on the fixture, this is headroom for a
#: footprint's float rounding moving a part across a block edge).
AREA_BYTES_TOLERANCE = 0.01
AREA_TILE = 256


@pytest.fixture(scope="module")
def area_sample(tmp_path_factory):
    from area_support import BBOX, write_area_series

    from temporal_median.job.area import Area
    from temporal_median.job.layout import plan_layout
    from temporal_median.scenes.stac import StacInput

    items = write_area_series(tmp_path_factory.mktemp("plan-area"))
    scenes = StacInput.from_request({"inputs": str(items)}, allow_local=True).scenes()
    layout = plan_layout(scenes, Area(bbox=tuple(BBOX), crs="EPSG:32631", resolution=10.0), AREA_TILE, max_windows=100)
    return items, layout


def measured_area_bytes(layout, directory) -> list[int]:
    """compute_area_tile's own bytes_read of each window of ``layout`` (no cloud: local paths)."""
    from temporal_median.compute.area import compute_area_tile

    read = []
    for tile, window in layout.grid.windows():
        chosen = layout.windows[tile]
        position = {index: i for i, index in enumerate(chosen)}
        groups = [g for g in (tuple(position[i] for i in group if i in position) for group in layout.observations) if g]
        stats = compute_area_tile([layout.scenes[i].url for i in chosen], groups, layout.raster, window,
                                  str(directory / f"{tile}.tif"))
        read.append(stats.bytes_read)
    return read


def test_an_areas_plan_reads_each_windows_scenes_in_their_own_pixel_space(area_sample, tmp_path):
    _, layout = area_sample
    datasets = [s.url for s in layout.scenes]
    # Both zones' scenes: 31TBK's on the output's pixel grid (plain windows), 30TYQ's warped.
    assert layout.raster.crs == "EPSG:32631" and {Path(url).name[:6] for url in datasets} == {"T30TYQ", "T31TBK"}
    plan = plan_job(datasets, layout.raster, layout.grid, Settings(), layout=layout)
    tiles = list(layout.grid.windows())
    assert len(plan.shape.windows) == len(tiles) > 1
    scenes = [len(layout.windows[tile]) for tile, _ in tiles]
    assert [w.scenes for w in plan.shape.windows] == scenes
    assert min(scenes) < len(datasets)  # windows that do not read every scene, or the test proves little
    assert plan.shape.scenes == len(datasets)  # fanout opens every scene of the job
    measured = measured_area_bytes(layout, tmp_path)
    planned = [w.bytes for w in plan.shape.windows]
    print(f"area plan: {planned} bytes per window; compute_area_tile read {measured}")
    assert all(m > 0 for m in measured)
    for (tile, _), p, m in zip(tiles, planned, measured):
        assert abs(p - m) <= AREA_BYTES_TOLERANCE * m, (str(tile), p, m)
    assert abs(sum(planned) - sum(measured)) <= AREA_BYTES_TOLERANCE * sum(measured)
    # As if co-registered (every scene in every window, at the window's offsets): another figure.
    flat = plan_job(datasets, layout.raster, layout.grid, Settings())
    assert [w.scenes for w in flat.shape.windows] == [len(datasets)] * len(tiles)
    assert flat.shape.bytes != plan.shape.bytes
    # The messages carry only each window's scenes, as the manifest's do.
    assert plan.shape.message_bytes < flat.shape.message_bytes


def test_the_cli_and_the_dry_run_plan_an_area_as_plan_job_does(area_sample, capsys, monkeypatch, tmp_path):
    from area_support import BBOX
    from functions_framework import create_app
    from pipeline_support import environment

    from temporal_median_cli.plan import main

    items, layout = area_sample
    expected = plan_job([s.url for s in layout.scenes], layout.raster, layout.grid, Settings(), layout=layout).to_dict()
    scenes = [len(v) for v in layout.windows.values()]
    assert main([str(items), "--bbox", *map(str, BBOX), "--crs", "EPSG:32631", "--resolution", "10",
                 "--tile-size", str(AREA_TILE), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    env = {"GOOGLE_CLOUD_PROJECT": "local-project", "TM_WINDOWS_TOPIC": "windows", "TM_WORK_URL": "gs://plan-work",
           "TM_RESULTS_URL": "gs://plan-results", "TM_ALLOW_LOCAL_PATHS": "true"}
    with environment(env):
        app = create_app("fanout", str(ROOT / "functions" / "fanout" / "main.py"), "http").test_client()
        body = {"inputs": str(items), "bbox": BBOX, "crs": "EPSG:32631", "resolution": 10, "tile_size": AREA_TILE,
                "dry_run": True}
        answer = app.post("/jobs", data=json.dumps(body), content_type="application/json")
    assert answer.status_code == 200, answer.get_json()
    dry = answer.get_json()
    assert dry["area"] is True and dry["inputs"] == len(layout.scenes)
    for plan in (cli, dry):
        assert plan["windows"] == len(layout.grid)
        assert plan["scenes_per_window"] == {"min": min(scenes), "max": max(scenes)}
        assert plan["bytes_to_read"] == expected["bytes_to_read"]
        assert plan["bytes_per_window"] == expected["bytes_per_window"]
