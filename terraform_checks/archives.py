"""Function zips, rebuilt the way the hashicorp/archive provider builds them."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from .config import TerraformConfig, resolve_local, unquote


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
            keys = list(resolve_local(config, for_each))
        excludes = body.get("excludes", [])
        if isinstance(excludes, str):
            excludes = resolve_local(config, excludes)
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
