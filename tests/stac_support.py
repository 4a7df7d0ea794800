"""A real STAC API on loopback for the tests: stac-fastapi-geoparquet serving a stac-geoparquet
copy of STAC items, in its own process group on a free port.

Why this server: it is a STAC API implementation from PyPI that needs no database server
(DuckDB runs in-process over stac-geoparquet files, one per collection) and implements item search with
``collections``, ``datetime``, ``bbox``, ``intersects`` and the Filter extension (CQL2), so a
cloud-cover filter is answered by the server. rustac's own ``rustac serve`` (in-memory backend)
has no Query or Filter support: a ``query`` or ``filter`` makes it answer no item at all.

Run as a script, this module is the server process:
``python stac_support.py serve COLLECTIONS_JSON PORT``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: How stac-fastapi-geoparquet recognises a collection's stac-geoparquet asset.
GEOPARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


def write_collections(items: list[dict], workdir: Path, collection: str = "sample") -> Path:
    """Write one stac-geoparquet file per collection (rustac) and the ``collections.json`` that
    lists them for the server; items without ``collection`` go to ``collection``.

    The server searches a collection's file as a whole, so each collection needs its own.
    Returns the path of ``collections.json``.
    """
    import rustac

    groups: dict[str, list[dict]] = {}
    for item in items:
        item = json.loads(json.dumps(item))
        item.setdefault("collection", collection)
        groups.setdefault(item["collection"], []).append(item)
    collections = []
    for name, members in groups.items():
        parquet = workdir / f"{name}.parquet"
        rustac.write_sync(str(parquet), members)
        boxes = [m["bbox"] for m in members if m.get("bbox")]
        times = sorted(m["properties"]["datetime"] for m in members if m.get("properties", {}).get("datetime"))
        collections.append({
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": name,
            "description": f"{len(members)} test items",
            "license": "other",
            "extent": {
                "spatial": {"bbox": [[min(b[0] for b in boxes), min(b[1] for b in boxes),
                                      max(b[2] for b in boxes), max(b[3] for b in boxes)]] if boxes else [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[times[0], times[-1]] if times else [None, None]]},
            },
            "links": [],
            "assets": {"data": {"href": str(parquet), "type": GEOPARQUET_MEDIA_TYPE, "roles": ["data"]}},
        })
    path = workdir / "collections.json"
    path.write_text(json.dumps(collections))
    return path


@dataclass
class StacServer:
    """A running STAC API server process and where to reach it."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server's whole process group: SIGTERM, then SIGKILL after ``timeout``."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)


def start_stac_server(items: list[dict], workdir: Path, *, collection: str = "sample", timeout: float = 60.0) -> StacServer:
    """Start a STAC API over ``items`` on 127.0.0.1 and wait until it answers.

    One collection per distinct ``collection`` of the items (see :func:`write_collections`).

    Parameters
    ----------
    items : list of dict
        STAC items; those without ``collection`` go to ``collection``.
    workdir : Path
        Where the stac-geoparquet files, ``collections.json`` and the server's log go.
    collection : str
        Collection of items that name none.
    timeout : float
        Seconds to wait for the landing page.

    Returns
    -------
    StacServer
        Call ``stop()`` when done (the :func:`stac_servers` fixture does).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    collections = write_collections(items, workdir, collection)
    port = free_port()
    log_path = workdir / "stac-server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(HERE), "serve", str(collections), str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends everything it started
            cwd=str(workdir),
        )
    server = StacServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the STAC server exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/conformance", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the STAC server did not answer within {timeout} s:\n{server.log()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stac_servers(tmp_path_factory):
    """Start STAC API servers with ``start(items, name=..., collection=...)``; all stop at the end."""
    started: list[StacServer] = []

    def start(items: list[dict], name: str = "stac", collection: str = "sample") -> StacServer:
        server = start_stac_server(items, tmp_path_factory.mktemp(name), collection=collection)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _serve(collections: str, port: int) -> None:
    """The server process: stac-fastapi-geoparquet on 127.0.0.1:``port`` over the collections
    (and their stac-geoparquet files) listed in ``collections``."""
    import rustac
    import rustac_duckdb_extensions
    import uvicorn
    from stac_fastapi.geoparquet.api import create
    from stac_fastapi.geoparquet.settings import Settings

    # DuckDB's spatial, icu and parquet extensions from the rustac-duckdb-extensions wheel:
    # without them DuckDB downloads them at start, and there is no network here. (rustac's
    # DuckdbClient() is meant to find them by itself, but its wrapper passes them in __init__,
    # after the Rust __new__ has already tried to install: so pass them explicitly.)
    client = rustac.DuckdbClient(
        extension_directory=rustac_duckdb_extensions.extension_directory(), install_extensions=False
    )
    settings = Settings(
        stac_fastapi_collections_href=collections,
        stac_fastapi_title="temporal-median test STAC API",
        stac_fastapi_description="stac-geoparquet served by stac-fastapi-geoparquet, for the tests",
        stac_fastapi_landing_id="temporal-median-tests",
        stac_fastapi_version="test",
    )
    api = create(settings, duckdb_client=client)
    uvicorn.run(api.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "serve":
        sys.exit("usage: stac_support.py serve COLLECTIONS_JSON PORT")
    _serve(sys.argv[2], int(sys.argv[3]))
