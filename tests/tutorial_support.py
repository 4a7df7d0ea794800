"""Helpers the tutorials call: a real STAC API on loopback over an ItemCollection file.

    eval "$(.venv/bin/python tests/tutorial_support.py stac-api data/year/items.json)"
    # ... STAC_URL is the API's root, STAC_PID its process
    kill "$STAC_PID"

``stac-api ITEMS_JSON [WORKDIR]`` starts stac-fastapi-geoparquet (the test suite's STAC API,
``stac_support.start_stac_server``) over the items, in collection ``sample``, on a free port of
127.0.0.1, in its own process group, detached; waits until it answers; and prints the
``export`` lines for ``STAC_URL`` and ``STAC_PID``. Its stac-geoparquet copy, collections file
and log go to WORKDIR (default: a new temporary directory). The server runs until killed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

# Run as a script, this file's folder (tests/) is first on sys.path.
from stac_support import start_stac_server


def stac_api(items_path: Path, workdir: Path | None, collection: str) -> int:
    items = json.loads(items_path.read_text())["features"]
    workdir = workdir or Path(tempfile.mkdtemp(prefix="stac-api-"))
    server = start_stac_server(items, workdir, collection=collection)
    print(f"export STAC_URL={shlex.quote(server.url)}")
    print(f"export STAC_PID={server.process.pid}")
    print(f"# a STAC API over {len(items)} items (collection {collection!r}); log {server.log_path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests/tutorial_support.py", description="Helpers the tutorials call.")
    commands = parser.add_subparsers(dest="command", required=True)
    api = commands.add_parser("stac-api", help="start a STAC API on loopback over an ItemCollection; print STAC_URL and STAC_PID")
    api.add_argument("items", type=Path, help="an ItemCollection .json (e.g. the items.json `temporal-median sample` writes)")
    api.add_argument("workdir", type=Path, nargs="?", help="where its files and log go (default: a new temporary directory)")
    api.add_argument("--collection", default="sample", help="the collection the items are served in (default: sample)")
    args = parser.parse_args(argv)
    return stac_api(args.items, args.workdir, args.collection)


if __name__ == "__main__":
    sys.exit(main())
