"""Memory and CPU: Cloud Run's table, checked against variables.tf by real ``terraform plan``s."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from pathlib import Path

from temporal_median.base.units import memory_gib

from .commands import plan_variables
from .config import TerraformConfig, block


def cloud_run_accepts(memory: str, cpu: str) -> bool:
    """Whether Cloud Run deploys a service with this memory and CPU limit.

    Its tables (https://cloud.google.com/run/docs/configuring/services/cpu,
    https://cloud.google.com/run/docs/configuring/services/memory-limits): 0.08 to 1 vCPU in steps
    of 0.001, above 1 only 2, 4, 6 or 8; memory 128 MiB to 32 GiB; below 1 vCPU, more than 512 MiB
    needs 0.5 vCPU and more than 1 GiB needs 1; 1 vCPU up to 4 GiB, 2 up to 8, 4 from 2 to 16,
    6 from 4 to 24, 8 from 4 to 32 GiB.
    """
    vcpu = float(cpu)
    gib = memory_gib(memory)
    if not 128 / 1024 <= gib <= 32:
        return False
    if vcpu < 1:
        if vcpu < 0.08 or round(vcpu * 1000) != vcpu * 1000:
            return False
        return gib <= 0.5 or (vcpu >= 0.5 and gib <= 1)
    if vcpu not in (1, 2, 4, 6, 8):
        return False
    minimum = {4: 2, 6: 4, 8: 4}.get(int(vcpu), 0)
    return minimum <= gib <= 4 * vcpu


def allowed_values(config: TerraformConfig, variable: str) -> list[str]:
    """The values a variable's ``contains([...], var.x)`` validation allows."""
    for rule in config.variables[variable].get("validation", []):
        match = re.search(r"contains\(\[([^\]]*)\],\s*var\." + re.escape(variable) + r"\)", str(rule.get("condition", "")))
        if match:
            return re.findall(r'"([^"]*)"', match.group(1))
    raise ValueError(f"variable {variable} has no contains([...]) validation to enumerate")


def memory_cpu_pairs(config: TerraformConfig) -> dict[str, list[tuple[dict[str, str], str, str]]]:
    """For each function: (variables to set, memory, cpu) for every pair its variables allow."""
    pairs: dict[str, list[tuple[dict[str, str], str, str]]] = {}
    for name, body in config.of_type("google_cloudfunctions2_function").items():
        service = block(body, "service_config")
        choices = []
        for key in ("available_memory", "available_cpu"):
            expr = str(service.get(key))
            match = re.fullmatch(r"\$\{var\.(\w+)\}", expr)
            if match:
                choices.append([(match.group(1), v) for v in allowed_values(config, match.group(1))])
            elif "${" in expr:
                raise ValueError(f"{name}.{key}: cannot enumerate {expr!r}")
            else:
                choices.append([(None, expr)])
        pairs[name] = [
            ({k: v for k, v in (mem, cpu) if k is not None}, mem[1], cpu[1]) for mem, cpu in itertools.product(*choices)
        ]
    return pairs


def memory_cpu_findings(
    config: TerraformConfig,
    module: Path | str,
    pairs: Mapping[str, list[tuple[dict[str, str], str, str]]] | None = None,
) -> list[str]:
    """Memory/CPU pairs where ``terraform plan`` and Cloud Run disagree.

    Every pair a function's variables allow (or only ``pairs``, shaped like
    :func:`memory_cpu_pairs`) is planned for real (``module`` from :func:`variables_module` of
    the same configuration); a pair Cloud Run refuses must fail the plan, a pair it accepts must
    pass.
    """
    findings = []
    for name, choices in (memory_cpu_pairs(config) if pairs is None else pairs).items():
        for variables, memory, cpu in choices:
            expected = cloud_run_accepts(memory, cpu)
            if variables:
                code, _ = plan_variables(module, **variables)
                planned = code == 0
            else:
                planned = True  # literals: nothing validates them before apply
            if planned != expected:
                verdict = "passes" if planned else "fails"
                cloud = "accepts" if expected else "refuses"
                findings.append(f"{name}: memory {memory} with cpu {cpu}: plan {verdict}, Cloud Run {cloud}")
    return findings
