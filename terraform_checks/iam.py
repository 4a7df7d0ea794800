"""IAM members and grants as data; the Pub/Sub agent's Token Creator on every push identity."""

from __future__ import annotations

import re
from typing import Any

from .config import TerraformConfig, resolve_locals


def member_accounts(config: TerraformConfig, member: Any) -> set[str]:
    """Names of the ``google_service_account`` resources an IAM ``member`` expression grants to."""
    text = resolve_locals(config, str(member))
    return set(re.findall(r"google_service_account\.(\w+)\.(?:email|member)", text))


def service_agent(config: TerraformConfig, member: Any) -> set[str]:
    """Services (``pubsub.googleapis.com``...) whose service agent an IAM ``member`` names."""
    text = resolve_locals(config, str(member))
    services = set()
    for name in re.findall(r"google_project_service_identity\.(\w+)\.(?:email|member)", text):
        body = config.resources.get(("google_project_service_identity", name), {})
        services.add(body.get("service"))
    return services


def iam_member_grants(config: TerraformConfig) -> dict[str, dict]:
    """Every ``*_iam_member`` resource, by address."""
    return {f"{t}.{n}": b for (t, n), b in config.resources.items() if t.endswith("_iam_member")}


# ---- push identities: the Pub/Sub service agent signs their OIDC tokens ------------------------


def push_identities(config: TerraformConfig) -> dict[str, str]:
    """Service accounts whose OIDC token Pub/Sub attaches to pushes -> where they are used.

    Our push subscriptions' ``oidc_token``, and each event-triggered function's trigger account
    (Eventarc delivers through a Pub/Sub push subscription with that account's token).
    """
    found: dict[str, str] = {}
    for name, body in config.of_type("google_pubsub_subscription").items():
        for push in body.get("push_config", []):
            for token in push.get("oidc_token", []):
                for account in re.findall(r"google_service_account\.(\w+)\.", str(token.get("service_account_email"))):
                    found[account] = f"google_pubsub_subscription.{name}"
    for name, body in config.of_type("google_cloudfunctions2_function").items():
        for trigger in body.get("event_trigger", []):
            for account in re.findall(r"google_service_account\.(\w+)\.", str(trigger.get("service_account_email"))):
                found[account] = f"google_cloudfunctions2_function.{name} event_trigger"
    return found


def push_token_creator_findings(config: TerraformConfig) -> list[str]:
    """Push identities the Pub/Sub service agent may not mint tokens for.

    Projects whose Pub/Sub service agent predates April 2021 need roles/iam.serviceAccountTokenCreator
    granted to it (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions,
    https://cloud.google.com/eventarc/docs/roles-permissions): on the account, or project-wide.
    """
    role = "roles/iam.serviceAccountTokenCreator"
    project_wide = any(
        b.get("role") == role and "pubsub.googleapis.com" in service_agent(config, b.get("member")) and not b.get("condition")
        for b in config.of_type("google_project_iam_member").values()
    )
    covered = {
        account
        for b in config.of_type("google_service_account_iam_member").values()
        if b.get("role") == role and "pubsub.googleapis.com" in service_agent(config, b.get("member"))
        for account in re.findall(r"google_service_account\.(\w+)\.(?:name|id)\b", str(b.get("service_account_id")))
    }
    if project_wide:
        return []
    return [
        f"{account} (used by {where}): the Pub/Sub service agent has no Token Creator on it"
        for account, where in sorted(push_identities(config).items())
        if account not in covered
    ]
