"""Helpers shared by the pipeline's tests: small sample series, emulator topologies, process env,
and the pipeline's full local cloud on either Pub/Sub emulator.

    @pytest.fixture(scope="module", params=EMULATOR_KINDS)
    def cloud(request, tmp_path_factory):
        with full_cloud(tmp_path_factory.mktemp("pipeline"), emulator=request.param) as local:
            yield local            # running, and this process's environment points at it
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from handlers.support import EMULATORS, clean_environ, write_topology

from localcloud import LocalCloud
from localcloud.topology import deep_merge

WORK, RESULTS = "tm-work", "tm-results"

# pytest params "builtin" and "google" (skipped with the reason when Google's emulator is missing).
EMULATOR_KINDS = EMULATORS
# Retry backoff for tests (the deployed 10-600 s would stall them). Google's emulator raises any
# minimum below 1 s to 1 s and retries about every 3 s from the third attempt on.
FAST_RETRIES = {"min_backoff_seconds": 0.2, "max_backoff_seconds": 0.5}

EMULATORS_ONLY = """
project = "local-project"
buckets = ["{work}", "{results}"]
topics = ["windows", "windows-dead-letter"]
[pubsub]
port = 0
emulator = "{emulator}"
[storage]
port = 0
[subscriptions.windows-pull]
topic = "windows"
ack_deadline_seconds = 60
"""


def make_series(out_dir: Path, *, scenes: int, width: int, height: int, seed: int = 7, **geometry) -> list[str]:
    """A small synthetic series (``geometry``: crs, pixel_size, origin); the scene paths in acquisition order."""
    from temporal_median_cli.sample import generate_series

    info = generate_series(
        str(out_dir), scenes=scenes, width=width, height=height, seed=seed, ground_truth=False, **geometry
    )
    paths = sorted(str(p) for p in Path(info.out_dir).glob("*_TCI.tif"))
    assert len(paths) == scenes
    return paths


def function_env(cloud: LocalCloud, **extra: str) -> dict[str, str]:
    """What a function process sees on the local cloud (as the topology's function_env does)."""
    env = dict(cloud.env())
    env.update(
        {
            "GOOGLE_CLOUD_PROJECT": "local-project",
            "TM_WINDOWS_TOPIC": "windows",
            "TM_WORK_URL": f"gs://{WORK}",
            "TM_RESULTS_URL": f"gs://{RESULTS}",
            "TM_ALLOW_LOCAL_PATHS": "true",
        }
    )
    env.update(extra)
    return env


def reset_clients() -> None:
    """Forget the process's cached settings and clients, so a new environment takes effect."""
    from temporal_median.base import storage
    from temporal_median.base.settings import get_settings
    from temporal_median.functions import fanout

    get_settings.cache_clear()
    storage.client.cache_clear()
    fanout.publisher.cache_clear()


@contextmanager
def environment(values: dict[str, str]):
    """Set environment variables for a block, restoring the previous values after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    reset_clients()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_clients()


def emulators(base: Path, emulator: str = "builtin") -> LocalCloud:
    """Pub/Sub and storage emulators (no function servers) on free ports, with a pull subscription on windows."""
    topology = write_topology(base / "topology.toml", EMULATORS_ONLY.format(work=WORK, results=RESULTS, emulator=emulator))
    return LocalCloud.load(topology, base / "run", environ=clean_environ()).up()


@contextmanager
def full_cloud(
    base: Path, emulator: str = "builtin", *, set_environment: bool = True, **overrides: Mapping
) -> Iterator[LocalCloud]:
    """The pipeline's own cloud (localcloud/topology.toml) on free ports, on the given Pub/Sub emulator.

    ``emulator``: "builtin", "google" or "auto". Fast retries (FAST_RETRIES) on the median push
    subscription and the mosaic trigger unless overridden. ``overrides`` are deep-merged into the
    topology by top-level table, e.g. ``functions={"median": {"timeout_seconds": 20,
    "max_instances": 1}}`` or ``subscriptions={"windows-median": {"max_delivery_attempts": 5}}``.
    With ``set_environment`` (default) this process's environment points at the cloud inside the
    block (as ``environment`` does). Yields the running LocalCloud; stops it after.
    Useful: ``cloud.emulator``, ``cloud.function_url(name)``, ``cloud.instances(name)`` and
    ``cloud.busy_pids(name)`` (pids to kill -9 mid-request), ``cloud.run_dir / "logs"``.
    """
    defaults = {
        "pubsub": {"port": 0, "emulator": emulator},
        "storage": {"port": 0},
        "eventarc": {"port": 0},
        "functions": {name: {"port": 0} for name in ("fanout", "median", "mosaic")},
        "subscriptions": {"windows-median": dict(FAST_RETRIES)},
        "triggers": {"mosaic": dict(FAST_RETRIES)},
    }
    merged = deep_merge(defaults, overrides)
    run_dir = base / "run"
    local = LocalCloud.load(None, run_dir, environ=clean_environ(), overrides=merged).up()
    try:
        if set_environment:
            with environment({**local.env(), "LOCALCLOUD_RUN_DIR": str(run_dir)}):
                yield local
        else:
            yield local
    finally:
        local.down()
