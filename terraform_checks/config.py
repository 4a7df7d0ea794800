"""The Terraform configuration as plain data: python-hcl2 parse, references, locals, env maps."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

REPO_ROOT = Path(__file__).resolve().parents[1]
TF_DIR = REPO_ROOT / "terraform"
BUILD_DIR = TF_DIR / "build"

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
    checks: Mapping[str, dict] = field(default_factory=dict)
    comments: tuple[str, ...] = ()

    @classmethod
    def load(cls, directory: Path | str = TF_DIR) -> TerraformConfig:
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
        checks: dict[str, dict] = {}
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
                for block_ in raw.get(kind, []):
                    for rtype, named in block_.items():
                        for name, body in named.items():
                            put(table, (unquote(rtype), unquote(name)), _clean(body), path)
            for kind, table in (("variable", variables), ("output", outputs), ("check", checks)):
                for block_ in raw.get(kind, []):
                    for name, body in block_.items():
                        put(table, unquote(name), _clean(body), path)
            for block_ in raw.get("locals", []):
                for name, body in _clean(block_).items():
                    put(local_values, name, body, path)
            terraform.extend(_clean(b) for b in raw.get("terraform", []))
            for block_ in raw.get("provider", []):
                for name, body in block_.items():
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
            checks=checks,
            comments=tuple(comments),
        )

    def of_type(self, rtype: str) -> dict[str, dict]:
        """Resources of one type, by name."""
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def required_providers(self) -> dict[str, dict]:
        """``required_providers`` entries of every ``terraform`` block, by local name."""
        found: dict[str, dict] = {}
        for block_ in self.terraform:
            for entry in block_.get("required_providers", []):
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


# ---- references between blocks, and the few expressions evaluated here ------------------------

_ADDRESS = re.compile(r"\b(data\.)?([a-z][a-z0-9_]*)\.([a-z0-9_]+)\b")


def references(config: TerraformConfig, value: Any) -> set[str]:
    """Addresses (``type.name`` or ``data.type.name``) of the blocks ``value`` refers to."""
    found: set[str] = set()
    for text in walk_strings(value):
        for data, rtype, name in _ADDRESS.findall(text):
            if data and (rtype, name) in config.data:
                found.add(f"data.{rtype}.{name}")
            elif not data and (rtype, name) in config.resources:
                found.add(f"{rtype}.{name}")
    return found


def resolve_locals(config: TerraformConfig, text: str, depth: int = 0) -> str:
    """``text`` with every ``${local.x}`` that names a string local replaced by its value."""
    if depth > 10:
        raise ValueError(f"locals nest too deep in {text!r}")

    def one(match: re.Match) -> str:
        value = config.locals.get(match.group(1))
        return resolve_locals(config, value, depth + 1) if isinstance(value, str) else match.group(0)

    return re.sub(r"\$\{local\.(\w+)\}", one, text)


def resolve_local(config: TerraformConfig, expression: str) -> Any:
    """The value of a whole-expression ``${local.x}`` reference."""
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
    match = re.fullmatch(r"\$\{merge\((.*)\)\}", expression, flags=re.DOTALL)
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
