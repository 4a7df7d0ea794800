"""`python -m localcloud up|down|status|env [--topology FILE] [--run-dir DIR]`.

The Pub/Sub emulator is Google's when installed, else the builtin one; LOCALCLOUD_PUBSUB_EMULATOR
(auto, google, builtin) or the topology's ``[pubsub] emulator`` chooses. `up` says which runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from .cloud import LocalCloud, LocalCloudError
from .topology import TopologyError


def _print_status(cloud: LocalCloud) -> bool:
    parts = cloud.status()
    if not parts:
        print(f"local cloud: not running (run dir {cloud.run_dir})")
        return False
    print(f"local cloud (run dir {cloud.run_dir}):")
    for part in parts:
        state = "running" if part.running else "STOPPED"
        pid = part.pid if part.pid is not None else "-"
        print(f"  {part.part:<22} {state:<8} pid {pid!s:<8} {part.url:<28} {part.log}")
    return all(p.running for p in parts)


def _print_env(cloud: LocalCloud) -> None:
    for key, value in sorted(cloud.env().items()):
        print(f"export {key}={shlex.quote(value)}")


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments (the documentation's CLI reference is generated from it)."""
    parser = argparse.ArgumentParser(prog="python -m localcloud", description="Start, inspect or stop the local cloud.")
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--topology", help="topology TOML (default: localcloud/topology.toml or $LOCALCLOUD_TOPOLOGY)")
    parser.add_argument("--run-dir", help="state and logs (default: <repo>/.localcloud or $LOCALCLOUD_RUN_DIR)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cloud = LocalCloud.load(args.topology, args.run_dir)
        if args.command == "up":
            began = time.monotonic()
            was_running = cloud.is_running()
            cloud.up()
            took = time.monotonic() - began
            print("local cloud already running" if was_running else f"local cloud up in {took:.1f} s")
            print(cloud.describe_emulator())
            _print_status(cloud)
            print("# environment for clients (eval \"$(python -m localcloud env)\"):")
            _print_env(cloud)
        elif args.command == "down":
            stopped = cloud.down()
            print(f"local cloud down: stopped {', '.join(stopped)}" if stopped else "local cloud: nothing was running")
        elif args.command == "status":
            running = _print_status(cloud)
            if cloud.status():
                print(cloud.describe_emulator())
            return 0 if running else 3
        else:
            if not cloud.is_running():
                print("local cloud is not running; run `python -m localcloud up`", file=sys.stderr)
                return 3
            _print_env(cloud)
    except (LocalCloudError, TopologyError) as exc:
        print(f"localcloud {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
