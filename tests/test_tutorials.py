"""The tutorials (docs/tutorials/*.md) run as written.

Each page's fenced blocks marked ``bash`` run, in order, in one ``bash -euo pipefail`` session
from the repository root (so variables carry from block to block); ``console``, ``sh`` and
``text`` blocks are shown only. One test per page, in the site's order. The pages bring the
local cloud up themselves (``python -m localcloud up``); here it is already running, started
once for the module on free ports with its own run directory (``full_cloud``), so a developer's
cloud on the default ports is neither used nor disturbed: the pages reach it through
``LOCALCLOUD_RUN_DIR`` and ``LOCALCLOUD_<PART>_PORT``, as ``temporal-median run`` and the pages'
``FANOUT=http://127.0.0.1:${LOCALCLOUD_FANOUT_PORT:-8681}`` do. ``DATA`` and ``OUT`` (the pages'
data and results folders, ``data`` and ``out`` by default) point into a temporary directory.
After each page, the test checks what the page should have produced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pipeline_support import full_cloud

from localcloud import clean_environ
from localcloud.topology import port_env_var

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "docs" / "tutorials"
#: The site's order (mkdocs.yml's nav); pages not listed run after these, by name.
ORDER = ["year", "area", "season", "stac", "deploy"]
#: Seconds one page may take before it is stopped (the whole module takes well under this).
PAGE_TIMEOUT = 300
#: What every page says about its blocks, in its admonition at the top.
CONVENTION = "bash -euo pipefail"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)[^\n`]*$")


def pages() -> list[Path]:
    found = {p.stem: p for p in TUTORIALS.glob("*.md")}
    return [found[n] for n in ORDER if n in found] + [found[n] for n in sorted(found) if n not in ORDER]


def fenced_blocks(text: str) -> list[tuple[str, int, str]]:
    """(info string, first line number, code) of each fenced block, indentation removed."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body, j = [], i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence) and not closing["info"]:
                break
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        blocks.append((opening["info"].lower(), i + 1, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def bash_script(page: Path) -> str:
    """The page's bash blocks as one script, each announced on stderr with its line number."""
    parts = []
    for info, line, code in fenced_blocks(page.read_text()):
        if info == "bash":
            parts.append(f"echo '>>> {page.name}:{line}' >&2\n{code}")
    return "".join(parts)


def port_of(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def tutorial_env(tmp_path_factory):
    """The environment the pages run in: a local cloud of their own, running, and DATA / OUT."""
    # The pages use a user's shell tools; say which one is missing rather than fail mid-page.
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    assert not missing, f"the tutorials need {' and '.join(missing)} on the PATH (Debian: apt install {' '.join(missing)})"
    base = tmp_path_factory.mktemp("tutorials")
    with full_cloud(base, emulator="builtin", set_environment=False) as cloud:
        env = clean_environ()
        env.update({
            "LOCALCLOUD_RUN_DIR": str(cloud.run_dir),
            "LOCALCLOUD_PUBSUB_EMULATOR": "builtin",
            "DATA": str(base / "data"),
            "OUT": str(base / "out"),
            "PYTHONUNBUFFERED": "1",
        })
        for part in cloud.status():
            name = part.part.split(":", 1)[-1]
            variable = port_env_var(name) if part.part.startswith("function:") else f"LOCALCLOUD_{name.upper()}_PORT"
            env[variable] = str(part.port)
        env["FANOUT_URL_FOR_TESTS"] = cloud.function_url("fanout").rstrip("/")
        yield env


def run_page(page: Path, env: dict) -> subprocess.CompletedProcess:
    script = bash_script(page)
    assert script, f"{page.name} has no bash block"
    started = time.monotonic()
    # Its own process group, so that a page stopped on timeout leaves nothing running.
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=PAGE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{page.name} did not finish in {PAGE_TIMEOUT} s:\n{stderr[-4000:]}")
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    took = time.monotonic() - started
    if done.returncode != 0:
        blocks = re.findall(r">>> (\S+)", done.stderr)
        pytest.fail(
            f"{page.name} failed (exit {done.returncode}) in the block at {blocks[-1] if blocks else '?'}:\n"
            f"--- stdout (tail)\n{done.stdout[-3000:]}\n--- stderr (tail)\n{done.stderr[-5000:]}"
        )
    print(f"{page.name}: {took:.1f} s")
    return done


# -- what each page should have produced ---------------------------------------------------------


def _raster(path: Path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.profile, ds.transform, ds.read(4), ds.descriptions


def _status(env: dict, job_id: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{env['FANOUT_URL_FOR_TESTS']}/jobs/{job_id}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def check_year(env: dict, out: Path, data: Path) -> None:
    year = out / "year"
    for name in ("median.tif", "quicklook.png", "job.json", "item.json", "collection.json"):
        assert (year / name).is_file(), name
    profile, _, count, descriptions = _raster(year / "median.tif")
    assert (profile["count"], profile["dtype"], profile["crs"].to_string()) == (4, "uint8", "EPSG:32631")
    assert (profile["width"], profile["height"]) == (800, 600)
    assert descriptions[:3] == ("red", "green", "blue") and 0 < count.max() <= 36
    job = json.loads((year / "job.json").read_text())
    assert job["state"] == "complete" and job["tiles"] == 12 and job["inputs"] == 36
    per_band = json.loads((out / "per-band-job.json").read_text())
    assert per_band["method"] == "per-band" and per_band["job_id"] != job["job_id"]
    assert _status(env, per_band["job_id"])[1]["state"] == "complete"


def check_area(env: dict, out: Path, data: Path) -> None:
    area = out / "area"
    profile, transform, count, _ = _raster(area / "median.tif")
    assert profile["crs"].to_string() == "EPSG:32631" and transform.a == 10 and transform.e == -10
    assert transform.c % 10 == 0 and transform.f % 10 == 0  # pixel edges on multiples of the resolution
    dates = len({f["properties"]["datetime"] for f in json.loads((data / "area" / "items.json").read_text())["features"]})
    assert dates == 12 and 0 < count.max() <= dates  # one observation per date, however many tiles overlap
    manifest = json.loads((out / "area-manifest.json").read_text())
    assert len(manifest["datasets"]) == 36 and len(manifest["area"]["observations"]) == 12
    assert len(manifest["area"]["windows"]) == json.loads((area / "job.json").read_text())["tiles"]


def check_season(env: dict, out: Path, data: Path) -> None:
    from PIL import Image

    season = out / "season"
    months = sorted(p.name for p in season.iterdir() if p.is_dir())
    assert months == [f"2023-{m:02d}" for m in range(1, 13)]
    for month in months:
        for name in ("median.tif", "quicklook.png", "item.json", "job.json"):
            assert (season / month / name).is_file(), f"{month}/{name}"
    collection = json.loads((season / "collection.json").read_text())
    assert sum(link["rel"] == "item" for link in collection["links"]) == 13
    assert Image.open(season / "timelapse.gif").n_frames == 12


def check_stac(env: dict, out: Path, data: Path) -> None:
    summer = json.loads((out / "summer" / "job.json").read_text())
    assert summer["state"] == "complete" and 0 < summer["inputs"] < 36
    status = _status(env, summer["job_id"])[1]
    assert status["scenes"]["criteria"] == {"start": "2023-04-01", "end": "2023-09-30", "max_cloud": 40}
    assert all(d["reason"] for d in status["scenes"]["dropped"]) and len(status["scenes"]["dropped"]) == 36 - summer["inputs"]
    estimated = json.loads((out / "summer-estimate" / "job.json").read_text())
    assert estimated["state"] == "complete"
    sources = {s["cloud_source"] for s in _status(env, estimated["job_id"])[1]["scenes"]["kept"]}
    assert sources == {"estimate"}


def check_deploy(env: dict, out: Path, data: Path) -> None:
    plan = json.loads((out / "plan.json").read_text())
    assert plan["windows"] == 121 and plan["prediction"]["complete"] and 0 < plan["prediction"]["usd_total"] < 0.10
    dry = json.loads((out / "dry-run.json").read_text())
    assert dry["dry_run"] is True and dry["windows"] == 4 and dry["prediction"]["wall_seconds"] > 0
    # Nothing was written by the dry run (the module's cloud is fresh): then the job ran for real.
    assert (out / "dry-run-get.txt").read_text().strip().endswith("HTTP 404")
    planned = json.loads((out / "planned" / "job.json").read_text())
    assert planned["job_id"] == dry["job_id"] and planned["state"] == "complete"
    assert (out / "planned" / "timeline-again.png").stat().st_size > 0


CHECKS = {"year": check_year, "area": check_area, "season": check_season, "stac": check_stac, "deploy": check_deploy}


def test_every_tutorial_is_tested_and_states_the_convention():
    assert [p.stem for p in pages()] == ORDER, "a tutorial without its check in this module"
    for page in pages():
        text = page.read_text()
        assert CONVENTION in text.split("\n## ", 1)[0], f"{page.name}: the convention admonition at the top"
        infos = {info for info, _, _ in fenced_blocks(text)}
        assert infos <= {"bash", "console", "sh", "text", "json", "python", "toml", "hcl", "yaml"}, (page.name, infos)


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.stem)
def test_tutorial_runs_as_written(page, tutorial_env):
    run_page(page, tutorial_env)
    CHECKS[page.stem](tutorial_env, Path(tutorial_env["OUT"]), Path(tutorial_env["DATA"]))
