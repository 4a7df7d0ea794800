"""Terraform versions: required_version must admit only releases that read variables.tf's rules."""

from __future__ import annotations

import re

from .config import TerraformConfig


def version_findings(config: TerraformConfig) -> list[str]:
    """Cross-variable validation rules under a required_version that allows Terraform < 1.9.

    A rule may name another variable only since Terraform 1.9; older versions refuse it.
    """
    crossing = []
    for name, body in config.variables.items():
        for rule in body.get("validation", []):
            others = set(re.findall(r"\bvar\.(\w+)", str(rule.get("condition", "")) + str(rule.get("error_message", "")))) - {name}
            if others:
                crossing.append(f"{name} -> {sorted(others)}")
    if not crossing:
        return []
    findings = []
    for block_ in config.terraform:
        constraint = str(block_.get("required_version", ""))
        lows = re.findall(r">=?\s*(\d+)\.(\d+)", constraint)
        if not lows or max((int(a), int(b)) for a, b in lows) < (1, 9):
            findings.append(f"required_version {constraint!r} allows Terraform < 1.9, but validations name other variables: {crossing}")
    return findings
