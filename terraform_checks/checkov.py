"""checkov, run offline from its own virtualenv (its pins clash with the project's)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BUILD_DIR, TF_DIR

CHECKOV_REQUIREMENTS = TF_DIR / "requirements-checkov.txt"
CHECKOV_VENV = BUILD_DIR / "checkov-venv"

@dataclass(frozen=True)
class CheckovReport:
    """Counts and IDs from one checkov run over the configuration."""

    passed: int
    failed: int
    skipped: int
    parsing_errors: int
    failed_checks: tuple[str, ...]
    skipped_checks: tuple[tuple[str, str, str], ...]
    version: str

    @classmethod
    def from_json(cls, document: Any, version: str) -> CheckovReport:
        """Read checkov's ``-o json`` output (one framework: a dict; several: a list)."""
        reports = document if isinstance(document, list) else [document]
        passed = failed = skipped = errors = 0
        failed_checks: list[str] = []
        skipped_checks: list[tuple[str, str, str]] = []
        for report in reports:
            summary = report.get("summary", {})
            passed += summary.get("passed", 0)
            failed += summary.get("failed", 0)
            skipped += summary.get("skipped", 0)
            errors += summary.get("parsing_errors", 0)
            results = report.get("results", {})
            for check in results.get("failed_checks", []):
                failed_checks.append(f"{check['check_id']} {check['resource']} ({check['file_path']})")
            for check in results.get("skipped_checks", []):
                reason = (check.get("check_result") or {}).get("suppress_comment", "")
                skipped_checks.append((check["check_id"], check["resource"], reason))
        return cls(passed, failed, skipped, errors, tuple(failed_checks), tuple(skipped_checks), version)


def checkov_executable() -> Path:
    """checkov from its own virtualenv, created (once per requirements content) if missing."""
    requirements = CHECKOV_REQUIREMENTS.read_bytes()
    stamp = CHECKOV_VENV / ".requirements.sha256"
    digest = hashlib.sha256(requirements).hexdigest()
    executable = CHECKOV_VENV / "bin" / "checkov"
    if executable.exists() and stamp.exists() and stamp.read_text() == digest:
        return executable
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(CHECKOV_VENV)], check=True)
    pip = [str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(CHECKOV_REQUIREMENTS)], check=True)
    stamp.write_text(digest)
    return executable


def run_checkov(directory: Path | str = TF_DIR, timeout: float = 300) -> CheckovReport:
    """Run checkov on ``directory`` offline (no platform download, no external modules)."""
    executable = checkov_executable()
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    env.pop("BC_API_KEY", None)
    command = [
        str(executable),
        "--directory", str(directory),
        "--framework", "terraform",
        "--quiet",
        "--compact",
        "--output", "json",
        "--skip-download",
        "--download-external-modules", "false",
        "--skip-path", "build",
    ]
    completed = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=timeout)
    # Exit 1 means "some check failed"; anything else non-zero is a crash.
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {completed.returncode}: {completed.stderr[-2000:]}")
    version = subprocess.run([str(executable), "--version"], check=False, capture_output=True, text=True).stdout.strip()
    return CheckovReport.from_json(json.loads(completed.stdout), version)
