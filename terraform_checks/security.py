"""Public members: where allUsers, allAuthenticatedUsers or a public principal set would be granted."""

from __future__ import annotations

from typing import Any

from .config import TerraformConfig, walk_strings

#: Lower-cased members that admit anyone: the two special members, and the principal-identifier
#: form of allUsers (https://cloud.google.com/iam/docs/principal-identifiers).
PUBLIC_MEMBERS = ("allusers", "allauthenticatedusers", "principalset://goog/public:all")


def public_member_findings(config: TerraformConfig) -> list[str]:
    """Places where a public member (:data:`PUBLIC_MEMBERS`) would be granted or defaulted.

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
            if any(member in lowered for member in PUBLIC_MEMBERS):
                findings.append(f"{where}: {text}")
    return findings
