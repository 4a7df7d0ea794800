"""Function builds: the build account reads the sources where Cloud Functions copies them, then waits."""

from __future__ import annotations

import re
from typing import Any

from .config import TerraformConfig, block, references, resolve_locals
from .iam import iam_member_grants, member_accounts

#: Roles that include storage.objects.get.
STORAGE_READ_ROLES = frozenset({
    "roles/storage.objectViewer",
    "roles/storage.objectUser",
    "roles/storage.objectAdmin",
    "roles/storage.admin",
})

SAMPLE_PROJECT_NUMBER = "123456789012"
SAMPLE_REGION = "europe-west1"


def storage_condition_grants(expression: str | None, resource_name: str) -> bool:
    """Whether an IAM condition admits the Cloud Storage resource ``resource_name``.

    Evaluates the subset of CEL a bucket-name condition needs: ``||`` of ``&&`` of
    ``resource.name == "..."``, ``resource.name.startsWith("...")`` and
    ``resource.type == "..."``. Anything else raises ValueError. No condition admits everything.
    """
    if expression is None:
        return True
    rtype = "storage.googleapis.com/Object" if "/objects/" in resource_name else "storage.googleapis.com/Bucket"
    atom = re.compile(
        r'^(?:resource\.name\s*==\s*"(?P<eq>[^"]*)"'
        r'|resource\.name\.startsWith\("(?P<prefix>[^"]*)"\)'
        r'|resource\.type\s*==\s*"(?P<type>[^"]*)")$'
    )

    def holds(term: str) -> bool:
        match = atom.match(term.strip())
        if not match:
            raise ValueError(f"cannot evaluate condition term {term.strip()!r}")
        if match.group("eq") is not None:
            return resource_name == match.group("eq")
        if match.group("prefix") is not None:
            return resource_name.startswith(match.group("prefix"))
        return rtype == match.group("type")

    return any(all(holds(t) for t in part.split("&&")) for part in expression.split("||"))


def _sample(config: TerraformConfig, text: str, region: str) -> str:
    """An expression with locals resolved and the project number and region filled in."""
    text = resolve_locals(config, text)
    text = re.sub(r"\$\{data\.google_project\.\w+\.number\}", SAMPLE_PROJECT_NUMBER, text)
    return text.replace("${var.region}", region)


def gcf_sources_bucket(region: str) -> str:
    """The bucket Cloud Functions gen2 copies sources to (https://cloud.google.com/functions/docs/building)."""
    return f"gcf-v2-sources-{SAMPLE_PROJECT_NUMBER}-{region}"


def build_read_grants(config: TerraformConfig, account: str, region: str = SAMPLE_REGION) -> list[tuple[str, Any]]:
    """(address, admits) for each grant of a reading role to ``account``.

    ``admits(bucket, object_name)`` says whether the grant lets the account read that object.
    Bucket-level grants admit their own bucket (the expression, e.g. ``${google_storage_bucket.sources.name}``);
    project-level grants admit what their condition admits, with the project number and region
    sampled.
    """
    grants = []
    for address, body in iam_member_grants(config).items():
        if body.get("role") not in STORAGE_READ_ROLES or account not in member_accounts(config, body.get("member")):
            continue
        rtype = address.split(".")[0]
        if rtype == "google_storage_bucket_iam_member":
            bucket_expr = body.get("bucket")
            grants.append((address, lambda bucket, obj, b=bucket_expr: bucket == b))
        elif rtype == "google_project_iam_member":
            conditions = body.get("condition") or [None]
            expression = conditions[0]["expression"] if conditions[0] else None
            if expression is not None:
                expression = _sample(config, expression, region)

            def admits(bucket: str, obj: str, e=expression) -> bool:
                return storage_condition_grants(e, f"projects/_/buckets/{bucket}") and storage_condition_grants(
                    e, f"projects/_/buckets/{bucket}/objects/{obj}"
                )

            grants.append((address, admits))
    return grants


def build_source_read_findings(config: TerraformConfig) -> list[str]:
    """Functions whose build account cannot read the source zip where the build fetches it.

    Cloud Functions gen2 copies the zip named in ``storage_source`` into
    ``gcf-v2-sources-<PROJECT_NUMBER>-<REGION>`` and Cloud Build fetches it from there
    (https://github.com/hashicorp/terraform-provider-google/issues/20571); the account needs read
    access on both.
    """
    findings = []
    for name, body in config.of_type("google_cloudfunctions2_function").items():
        build_config = block(body, "build_config")
        accounts = set(re.findall(r"google_service_account\.(\w+)\.", str(build_config.get("service_account", ""))))
        if len(accounts) != 1:
            findings.append(f"{name}: build_config.service_account is not one of our service accounts")
            continue
        account = accounts.pop()
        region = SAMPLE_REGION if body.get("location") == "${var.region}" else str(body.get("location"))
        source = block(block(build_config, "source"), "storage_source")
        places = {
            "its storage_source bucket": (source["bucket"], "fn/0123.zip"),
            "the gcf-v2-sources bucket": (gcf_sources_bucket(region), f"{name}/function-source.zip"),
        }
        try:
            grants = build_read_grants(config, account, region)
            for label, (bucket, obj) in places.items():
                if not any(admits(bucket, obj) for _, admits in grants):
                    findings.append(f"{name}: build account {account} cannot read {label} ({bucket})")
        except ValueError as exc:
            findings.append(f"{name}: {exc}")
    return findings


def build_wait_findings(config: TerraformConfig) -> list[str]:
    """Functions that do not depend on a ``time_sleep`` that follows all their build account's grants."""
    grants = iam_member_grants(config)
    sleeps = {
        name: references(config, body) for name, body in config.of_type("time_sleep").items() if body.get("create_duration")
    }
    findings = []
    for name, body in config.of_type("google_cloudfunctions2_function").items():
        accounts = set(re.findall(r"google_service_account\.(\w+)\.", str(block(body, "build_config").get("service_account", ""))))
        build_grants = {a for a, g in grants.items() if member_accounts(config, g.get("member")) & accounts}
        if not build_grants:
            findings.append(f"{name}: its build account {sorted(accounts)} has no grants at all")
            continue
        depends = references(config, body.get("depends_on", []))
        waited_for: set[str] = set()
        for sleep, refs in sleeps.items():
            if f"time_sleep.{sleep}" in depends:
                waited_for |= refs
        missing = build_grants - waited_for
        if missing:
            findings.append(f"{name}: no wait after the build grants {sorted(missing)}")
    return findings
