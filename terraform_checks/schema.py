"""Provider arguments, as hashicorp/terraform-provider-google v6.50.0 declares them, for blocks no validate checks here."""

from __future__ import annotations

import re
from typing import Any

from .config import TerraformConfig, walk_strings

#: Block type -> its arguments and nested blocks (a nested block is a dict of the same shape),
#: copied from the provider's schema at v6.50.0. Only blocks whose arguments were hand-checked
#: are listed; meta-arguments (count, for_each, depends_on, provider, lifecycle) are always allowed.
SCHEMAS: dict[str, dict[str, Any]] = {
    # google/services/cloudquotas/data_source_google_cloud_quotas_quota_info.go: parent, service
    # and quota_id are required; the rest is computed. dimensions_infos is a list of
    # {dimensions (map), details (list of {value}), applicable_locations}.
    "data.google_cloud_quotas_quota_info": {
        "parent": None, "service": None, "quota_id": None,
    },
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

#: Attributes of data.google_cloud_quotas_quota_info that expressions may read: its own, those of
#: each dimensions_infos element, and those of each element's details.
QUOTA_INFO_ATTRIBUTES = frozenset({
    "name", "quota_id", "metric", "service", "is_precise", "refresh_interval", "container_type",
    "dimensions", "metric_display_name", "quota_display_name", "metric_unit",
    "quota_increase_eligibility", "is_fixed", "dimensions_infos", "is_concurrent",
    "service_request_quota_uri", "parent",
})
DIMENSIONS_INFO_ATTRIBUTES = frozenset({"dimensions", "details", "applicable_locations"})
DETAILS_ATTRIBUTES = frozenset({"value"})

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
    """Arguments of the blocks in :data:`SCHEMAS` that the provider does not declare, enum values
    it would refuse, and quota-info attributes read that it does not set."""
    findings: list[str] = []
    blocks = [(t, n, b) for (t, n), b in config.resources.items()] + [(f"data.{t}", n, b) for (t, n), b in config.data.items()]
    for rtype, name, body in blocks:
        if rtype in SCHEMAS:
            _check(body, SCHEMAS[rtype], (rtype,), findings)
    everything = [*config.locals.values(), *config.resources.values(), *config.outputs.values(), *config.checks.values()]
    for text in (s for value in everything for s in walk_strings(value)):
        findings += [f"{QUOTA}: {m}" for m in quota_info_reads(text)]
    return findings


QUOTA = "data.google_cloud_quotas_quota_info"


def quota_info_reads(text: str) -> list[str]:
    """Attributes an expression reads from the quota info data source (directly, or through
    ``for`` variables bound to its instances and their ``dimensions_infos``) that it lacks."""
    bad: list[str] = []

    def unknown(attributes: list[str], known: frozenset[str], where: str) -> None:
        bad.extend(f"{where} has no attribute {a}" for a in attributes if a not in known)

    unknown(re.findall(QUOTA.replace(".", r"\.") + r"\.\w+(?:\[[^\]]*\])?\.(\w+)", text), QUOTA_INFO_ATTRIBUTES, "the quota info")
    for info in set(re.findall(r"for\s+(?:\w+\s*,\s*)?(\w+)\s+in\s+" + QUOTA.replace(".", r"\.") + r"\.\w+", text)):
        unknown(re.findall(rf"\b{info}\.(\w+)", text), QUOTA_INFO_ATTRIBUTES, "the quota info")
        for item in set(re.findall(rf"for\s+(\w+)\s+in\s+{info}\.dimensions_infos\b", text)):
            unknown(re.findall(rf"\b{item}\.(\w+)", text), DIMENSIONS_INFO_ATTRIBUTES, "a dimensions_infos element")
            unknown(re.findall(rf"\b{item}\.details\[\d+\]\.(\w+)", text), DETAILS_ATTRIBUTES, "a details element")
    return sorted(set(bad))
