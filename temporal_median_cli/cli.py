"""Dispatch `temporal-median <command>` to the module that owns the command."""

from __future__ import annotations

import os
import sys

USAGE = """usage: temporal-median <command> [options]

commands:
  sample OUT_DIR            write a synthetic Sentinel-2-like series of COGs (and its ground truth)
  run INPUT OUTPUT          compute the temporal median of INPUT on the local cloud, results in OUTPUT
  plan INPUT | --geometry SxWxH
                            windows, bytes to read, predicted wall time and cost as deployed; nothing runs
  timeline JOB_ID|job.json  draw a finished job's attempts, a row per instance, into a PNG
  up | down | status | env  start, stop or inspect the local cloud; env prints its variables

`temporal-median <command> --help` tells more.
"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    try:
        code = _dispatch(command, rest)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`temporal-median plan ... | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _dispatch(command: str, rest: list[str]) -> int:
    if command == "sample":
        from .sample import main as sample_main

        return sample_main(rest)
    if command == "run":
        from .run import main as run_main

        return run_main(rest)
    if command == "plan":
        from .plan import main as plan_main

        return plan_main(rest)
    if command == "timeline":
        from .timeline import main as timeline_main

        return timeline_main(rest)
    if command in ("up", "down", "status", "env"):
        from localcloud.__main__ import main as cloud_main

        return cloud_main([command, *rest])
    print(f"temporal-median: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2
