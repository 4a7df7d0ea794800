"""``python -m terraform_checks``: run every offline check, print a summary, exit 1 on a problem."""

from __future__ import annotations

import argparse
import sys
import tempfile

from .apis import api_findings
from .archives import archive_members, function_archives
from .builds import build_source_read_findings, build_wait_findings
from .checkov import run_checkov
from .commands import unformatted_files, variables_module
from .config import TerraformConfig
from .iam import push_token_creator_findings
from .schema import schema_findings
from .security import public_member_findings
from .sizes import (
    NEW_PROJECT_QUOTA,
    memory_cpu_findings,
    memory_cpu_pairs,
    quota_findings,
    quota_plan_findings,
)
from .versions import version_findings


def main(argv: list[str] | None = None) -> int:
    """Run every check and print what it found; exit non-zero on any problem."""
    argparse.ArgumentParser(
        prog="python -m terraform_checks",
        description="Offline checks of terraform/: fmt, the variables' validation rules (terraform plan), "
        "public members, grants, APIs, build waits, sizes and quotas, provider arguments, function zips, "
        "checkov (installed into terraform/build/checkov-venv on first use). Exit 1 on any problem.",
    ).parse_args(argv)
    problems = 0
    config = TerraformConfig.load()
    unformatted = unformatted_files()
    print(f"terraform fmt: {len(unformatted)} file(s) to reformat {unformatted}")
    problems += bool(unformatted)
    public = public_member_findings(config)
    print(f"public members: {len(public)} {public}")
    problems += bool(public)
    for label, spec in function_archives(config).items():
        members = archive_members(spec["source_dir"], spec["excludes"], spec["exclude_symlink_directories"])
        core = [m for m in members if m.startswith("temporal_median/")]
        print(f"zip {label}: {len(members)} files, {len(core)} in temporal_median/")
        problems += not core
    for label, findings in (
        ("APIs", api_findings(config)),
        ("build source read", build_source_read_findings(config)),
        ("wait after build grants", build_wait_findings(config)),
        ("push token creator", push_token_creator_findings(config)),
        ("terraform version", version_findings(config)),
        ("provider arguments", schema_findings(config)),
    ):
        print(f"{label}: {len(findings)} problem(s) {findings}")
        problems += bool(findings)
    with tempfile.TemporaryDirectory() as tmp:
        module = variables_module(config.directory, tmp)
        pairs = sum(len(p) for p in memory_cpu_pairs(config).values())
        findings = memory_cpu_findings(config, module)
    print(f"memory/cpu: {pairs} pairs planned, {len(findings)} disagree with Cloud Run {findings}")
    problems += bool(findings)
    with tempfile.TemporaryDirectory() as tmp:
        findings = quota_findings(config) + quota_plan_findings(config.directory, tmp)
    print(f"quota: defaults within a new project's {NEW_PROJECT_QUOTA[0]:g} vCPU / {NEW_PROJECT_QUOTA[1]:g} GiB: {len(findings)} problem(s) {findings}")
    problems += bool(findings)
    report = run_checkov()
    print(f"checkov {report.version}: passed={report.passed} failed={report.failed} skipped={report.skipped} parsing_errors={report.parsing_errors}")
    for failed in report.failed_checks:
        print(f"  FAILED {failed}")
    # With --quiet checkov's JSON lists only failures; the skips and their reasons are in the code.
    for comment in config.comments:
        if comment.startswith("checkov:skip="):
            print(f"  {comment}")
    problems += report.failed + report.parsing_errors
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
