"""APIs: which Google APIs every resource type calls, and whether local.apis enables them."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .config import TerraformConfig

#: Resource type (``data.`` prefix for data sources) -> the APIs the provider calls for it. A type
#: with no entry fails the check: adding a resource type means saying which API it needs.
RESOURCE_APIS: dict[str, tuple[str, ...]] = {
    # Enabling an API goes through Service Usage; reading it back also reads the project through
    # Resource Manager (resource_google_project_service.go calls Projects.Get).
    "google_project_service": ("serviceusage.googleapis.com", "cloudresourcemanager.googleapis.com"),
    # services.generateServiceIdentity, a Service Usage (beta) method.
    "google_project_service_identity": ("serviceusage.googleapis.com",),
    "google_service_account": ("iam.googleapis.com",),
    "google_service_account_iam_member": ("iam.googleapis.com",),
    # projects.getIamPolicy / setIamPolicy (issue 11: this API was not enabled).
    "google_project_iam_member": ("cloudresourcemanager.googleapis.com",),
    "data.google_project": ("cloudresourcemanager.googleapis.com",),
    "google_storage_bucket": ("storage.googleapis.com",),
    "google_storage_bucket_object": ("storage.googleapis.com",),
    "google_storage_bucket_iam_member": ("storage.googleapis.com",),
    "data.google_storage_project_service_account": ("storage.googleapis.com",),
    "google_pubsub_topic": ("pubsub.googleapis.com",),
    "google_pubsub_subscription": ("pubsub.googleapis.com",),
    "google_pubsub_topic_iam_member": ("pubsub.googleapis.com",),
    "google_pubsub_subscription_iam_member": ("pubsub.googleapis.com",),
    "google_artifact_registry_repository": ("artifactregistry.googleapis.com",),
    "google_artifact_registry_repository_iam_member": ("artifactregistry.googleapis.com",),
    "google_cloud_run_v2_service_iam_member": ("run.googleapis.com",),
    # A gen2 function is built by Cloud Build into Artifact Registry, logs there, runs on Cloud Run;
    # an event trigger is an Eventarc trigger delivering through Pub/Sub
    # (https://cloud.google.com/functions/docs/building, .../docs/calling/eventarc).
    "google_cloudfunctions2_function": (
        "cloudfunctions.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
        "run.googleapis.com",
        "logging.googleapis.com",
        "eventarc.googleapis.com",
        "pubsub.googleapis.com",
    ),
    # quota.tf: services.quotaInfos.get of the Cloud Quotas API.
    "data.google_cloud_quotas_quota_info": ("cloudquotas.googleapis.com",),
    # Local to Terraform: no Google API.
    "time_sleep": (),
    "terraform_data": (),
    "data.archive_file": (),
}

#: On in every project, and what enables the others: it cannot be enabled through itself.
BOOTSTRAP_APIS = frozenset({"serviceusage.googleapis.com"})


def enabled_apis(config: TerraformConfig) -> set[str]:
    """Services listed in ``local.apis`` (enabled by ``google_project_service.apis``)."""
    return set(re.findall(r'"([a-z0-9-]+\.googleapis\.com)"', str(config.locals.get("apis", ""))))


def api_findings(config: TerraformConfig, table: Mapping[str, tuple[str, ...]] = RESOURCE_APIS) -> list[str]:
    """Resource types missing from ``table``, and APIs a used type needs that are not enabled."""
    enabled = enabled_apis(config) | BOOTSTRAP_APIS
    used = {t for t, _ in config.resources} | {f"data.{t}" for t, _ in config.data}
    findings = []
    for rtype in sorted(used):
        if rtype not in table:
            findings.append(f"{rtype}: no entry in RESOURCE_APIS (which API does it call?)")
            continue
        for api in table[rtype]:
            if api not in enabled:
                findings.append(f"{rtype}: needs {api}, which local.apis does not enable")
    return findings
