"""Helpers shared by the pipeline's tests: small sample series, emulator topologies, process env."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from handlers.support import clean_environ, write_topology

from localcloud import LocalCloud

WORK, RESULTS = "tm-work", "tm-results"

EMULATORS_ONLY = f"""
project = "local-project"
buckets = ["{WORK}", "{RESULTS}"]
topics = ["windows", "windows-dead-letter"]
[pubsub]
port = 0
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
    from temporal_median import fanout, storage
    from temporal_median.settings import get_settings

    get_settings.cache_clear()
    storage._client = None
    fanout._publisher = None


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


def emulators(base: Path) -> LocalCloud:
    """Pub/Sub and storage emulators (no function servers) on free ports, with a pull subscription on windows."""
    topology = write_topology(base / "topology.toml", EMULATORS_ONLY)
    return LocalCloud.load(topology, base / "run", environ=clean_environ()).up()
