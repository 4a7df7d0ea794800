"""Provider arguments, as hashicorp/terraform-provider-google v6.50.0 declares them, for blocks no validate checks here."""

from __future__ import annotations

from typing import Any

from .config import TerraformConfig

#: Block type -> its arguments and nested blocks (a nested block is a dict of the same shape),
#: copied from the provider's schema at v6.50.0. Only blocks whose arguments were hand-checked
#: are listed; meta-arguments (count, for_each, depends_on, provider, lifecycle) are always allowed.
SCHEMAS: dict[str, dict[str, Any]] = {
    # google/services/artifactregistry/resource_artifact_registry_repository.go
    "google_artifact_registry_repository": {
        "project": None, "location": None, "repository_id": None, "description": None, "format": None,
        "labels": None, "kms_key_name": None, "mode": None, "cleanup_policy_dry_run": None,
        "cleanup_policies": {
            "id": None, "action": None,
            "condition": {
                "tag_state": None, "tag_prefixes": None, "version_name_prefixes": None,
                "package_name_prefixes": None, "older_than": None, "newer_than": None,
            },
            "most_recent_versions": {"package_name_prefixes": None, "keep_count": None},
        },
    },
}

#: Enumerated values the provider validates (verify.ValidateEnum in the same files).
ENUMS: dict[tuple[str, ...], frozenset[str]] = {
    ("google_artifact_registry_repository", "cleanup_policies", "action"): frozenset({"DELETE", "KEEP"}),
    ("google_artifact_registry_repository", "cleanup_policies", "condition", "tag_state"): frozenset({"TAGGED", "UNTAGGED", "ANY"}),
}

_META = {"count", "for_each", "depends_on", "provider", "lifecycle"}


def _check(body: Any, schema: dict[str, Any], path: tuple[str, ...], findings: list[str]) -> None:
    for key, value in body.items():
        if key in _META and len(path) == 1:
            continue
        if key not in schema:
            findings.append(f"{'.'.join(path)}: {key} is not an argument of the provider's schema")
            continue
        allowed = ENUMS.get((path[0].removeprefix("data."), *path[1:], key))
        if allowed is not None and isinstance(value, str) and "${" not in value and value not in allowed:
            findings.append(f"{'.'.join(path)}.{key}: {value!r} is not one of {sorted(allowed)}")
        nested = schema[key]
        if isinstance(nested, dict):
            for item in value if isinstance(value, list) else [value]:
                _check(item, nested, (*path, key), findings)


def schema_findings(config: TerraformConfig) -> list[str]:
    """Arguments of the blocks in :data:`SCHEMAS` that the provider does not declare, and enum
    values it would refuse."""
    findings: list[str] = []
    blocks = [(t, n, b) for (t, n), b in config.resources.items()] + [(f"data.{t}", n, b) for (t, n), b in config.data.items()]
    for rtype, name, body in blocks:
        if rtype in SCHEMAS:
            _check(body, SCHEMAS[rtype], (rtype,), findings)
    return findings
