"""Memory, CPU and instances: Cloud Run's table (real ``terraform plan``s) and regional quotas."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from pathlib import Path

from temporal_median.base.units import memory_gib

from .commands import plan_variables, quota_module
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


# ---- regional quotas: what the defaults ask of a new project -----------------------------------

#: Cloud Run's regional CPU (vCPU) and memory (GiB) allocation quotas seen on new projects
#: (https://github.com/googlecodelabs/feedback/issues/1856: CpuAllocPerProjectRegion 20000
#: milli-vCPU, MemAllocPerProjectRegion 42949672960 bytes).
NEW_PROJECT_QUOTA = (20.0, 40.0)


def _default(config: TerraformConfig, expression: object) -> object:
    """A ``${var.x}`` expression's default value, or a literal as is."""
    match = re.fullmatch(r"\$\{var\.(\w+)\}", str(expression))
    if not match:
        if "${" in str(expression):
            raise ValueError(f"cannot evaluate {expression!r} with the defaults")
        return expression
    return config.variables[match.group(1)]["default"]


def quota_requests(config: TerraformConfig) -> dict[str, tuple[int, float, float]]:
    """For each function, with the variables' defaults: (max instances, vCPU, GiB) it asks of
    the regional quotas, max instances x its instance's CPU and memory."""
    requests = {}
    for name, body in config.of_type("google_cloudfunctions2_function").items():
        service = block(body, "service_config")
        instances = int(_default(config, service["max_instance_count"]))
        cpu = float(_default(config, service["available_cpu"]))
        gib = memory_gib(str(_default(config, service["available_memory"])))
        requests[name] = (instances, instances * cpu, instances * gib)
    return requests


def quota_findings(config: TerraformConfig, quota: tuple[float, float] = NEW_PROJECT_QUOTA) -> list[str]:
    """Where the defaults, with every function at its max instances at once, exceed ``quota``
    (vCPU, GiB); each function's share is named."""
    requests = quota_requests(config)
    shares = ", ".join(f"{n} {i} instances: {c:g} vCPU, {g:g} GiB" for n, (i, c, g) in sorted(requests.items()))
    vcpu = sum(c for _, c, _ in requests.values())
    gib = sum(g for _, _, g in requests.values())
    findings = []
    if vcpu > quota[0]:
        findings.append(f"the defaults ask {vcpu:g} vCPU at once, over {quota[0]:g} ({shares})")
    if gib > quota[1]:
        findings.append(f"the defaults ask {gib:g} GiB at once, over {quota[1]:g} ({shares})")
    return findings


def quota_infos(vcpu: float, gib: float, region: str = "europe-west1") -> dict:
    """The two quota infos quota.tf reads, shaped like the data source's instances: ``vcpu``
    and ``gib`` in ``region``, a generous default (200 vCPU, 400 GiB) elsewhere."""

    def info(value: int, default: int) -> dict:
        return {"dimensions_infos": [
            {"dimensions": {"region": region}, "details": [{"value": str(value)}]},
            {"dimensions": {}, "details": [{"value": str(default)}]},
        ]}

    return {"cpu": info(round(vcpu * 1000), 200_000), "memory": info(round(gib * 2**30), 400 * 2**30)}


def quota_plan_findings(source: Path | str, target: Path | str, quota: tuple[float, float] = NEW_PROJECT_QUOTA) -> list[str]:
    """Plan quota.tf for real (:func:`quota_module`) with the defaults and a project holding
    ``quota``: its preconditions must pass and its check block must not warn."""
    module = quota_module(source, target)
    code, output = plan_variables(module, run_quota_infos=quota_infos(*quota))
    findings = []
    if code != 0:
        findings.append(f"plan with a {quota[0]:g} vCPU / {quota[1]:g} GiB quota fails: {output[-1500:]}")
    if "Check block assertion failed" in output:
        findings.append(f"plan with a {quota[0]:g} vCPU / {quota[1]:g} GiB quota warns: {output[-1500:]}")
    return findings
