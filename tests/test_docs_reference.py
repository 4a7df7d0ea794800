"""The generated reference pages: every request field, CLI option, setting and Terraform block is on its page."""

from __future__ import annotations

import argparse
import ast
import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from temporal_median.base import errors
from temporal_median.base.errors import InvalidRequest
from temporal_median.base.settings import VARIABLES, Settings
from temporal_median.job import fields as request_fields
from temporal_median.job.area import AREA_KEYS
from temporal_median.job.fields import JOB_STATES, MASK_FIELDS, MOSAIC_STATES, REQUEST_FIELDS, STAC_FIELDS, names
from temporal_median.job.masks import Mask
from temporal_median.job.request import JobRequest
from temporal_median.scenes.stac import StacSearch

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "reference.py"


def _load_hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    """Each generated page, with the entities the generator writes decoded (so names read plainly)."""
    return {uri: html.unescape(generate()) for uri, generate in hook.PAGES.items()}


def _code(name: str) -> str:
    return f"<code>{html.escape(name, quote=False)}</code>"


def _rendered(text: str) -> str:
    """Prose as the page holds it (Markdown's characters escaped, entities decoded)."""
    return html.unescape(hook.prose(text))


def _literal_keys(path: Path, receiver: str) -> set[str]:
    """The string keys a module reads from ``receiver``: ``receiver.get("k")``, ``receiver["k"]``, ``"k" in receiver``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == receiver
                and node.args and isinstance(node.args[0], ast.Constant)):
            found.add(node.args[0].value)
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == receiver
              and isinstance(node.slice, ast.Constant)):
            found.add(node.slice.value)
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
              and isinstance(node.ops[0], (ast.In, ast.NotIn))
              and isinstance(node.comparators[0], ast.Name) and node.comparators[0].id == receiver):
            found.add(node.left.value)
    return {key for key in found if isinstance(key, str)}


# ---- the request's fields: the table is what the validator accepts ----------------------------


def test_the_validator_accepts_exactly_the_documented_request_fields():
    for name in names(REQUEST_FIELDS):
        # A documented field is never refused as unknown (it may be refused for its value).
        try:
            JobRequest.from_json({"inputs": "gs://b/p", name: None}, Settings())
        except InvalidRequest as exc:
            assert "unknown field" not in str(exc), name
    with pytest.raises(InvalidRequest, match="unknown field"):
        JobRequest.from_json({"inputs": "gs://b/p", "undocumented": 1}, Settings())


def test_every_field_the_request_code_reads_is_in_the_table():
    job, scenes = ROOT / "temporal_median" / "job", ROOT / "temporal_median" / "scenes"
    read = set()
    for path in (job / "request.py", job / "area.py", scenes / "selection.py", scenes / "stac.py"):
        read |= _literal_keys(path, "body")
    assert read and read <= names(REQUEST_FIELDS), read - names(REQUEST_FIELDS)
    assert set(AREA_KEYS) <= names(REQUEST_FIELDS)


def test_the_nested_tables_match_their_validators():
    stac = ROOT / "temporal_median" / "scenes" / "stac.py"
    assert names(STAC_FIELDS) == set(_literal_keys(stac, "spec"))
    with pytest.raises(InvalidRequest, match="unknown field"):
        StacSearch.from_request({"url": "https://x.test", "collections": ["c"], "undocumented": 1})
    assert names(MASK_FIELDS) == _literal_keys(ROOT / "temporal_median" / "job" / "masks.py", "value")
    with pytest.raises(InvalidRequest):
        Mask.from_request({"undocumented": 1})


def test_every_request_field_is_on_the_http_page(pages):
    page = pages["reference/http.md"]
    for table in (REQUEST_FIELDS, STAC_FIELDS, MASK_FIELDS):
        for field in table:
            assert f"| {_code(field.name)} | " in page, field.name
            assert _rendered(field.description)[:40] in page, field.name


# ---- job states, answers and errors ---------------------------------------------------------


def _string_values(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_job_states_are_those_the_status_code_sets(pages):
    tree = ast.parse(hook.FANOUT.read_text())
    status = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "job_status")
    set_states = set()
    for node in ast.walk(status):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "state" for t in node.targets):
            set_states |= _string_values(node.value)
    assert set_states == {state for state, _ in JOB_STATES}
    mosaic_states = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "state" and isinstance(value, ast.IfExp):
                    mosaic_states |= _string_values(value)
    assert mosaic_states == {state for state, _ in MOSAIC_STATES}
    for state, _ in JOB_STATES + MOSAIC_STATES:
        assert f"| {_code(state)} | " in pages["reference/http.md"]


def test_every_key_of_fanouts_answers_is_explained(pages):
    page = pages["reference/http.md"]
    for answer, keys in hook.answers().items():
        assert keys, answer
        for key, nested in keys.items():
            assert hook.ANSWER_KEYS.get(key), f"{answer}: {key} has no entry in docs/hooks/reference.py ANSWER_KEYS"
            assert f"| {_code(key)} | " in page
            for inner in nested:
                assert _code(inner) in page, (key, inner)


def test_every_error_code_and_status_is_on_the_http_page(pages):
    page = pages["reference/http.md"]
    documented = hook._errors()
    ours = {cls for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.TemporalMedianError)}
    assert set(documented) == ours
    for cls in documented:
        assert f"| {_code(cls.code)} | {_code(cls.__name__)} | {errors.policy(cls()).status} |" in page
    for kind, policy in errors.POLICIES:
        assert f"| {_code(kind.__name__)} | {policy.status} |" in page
    for status in (200, 202, 405):
        assert str(status) in page


# ---- the command line -----------------------------------------------------------------------


def test_every_command_the_cli_dispatches_has_a_parser_on_the_page(pages):
    tree = ast.parse((ROOT / "temporal_median_cli" / "cli.py").read_text())
    dispatched = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "command":
            dispatched |= _string_values(node.comparators[0])
    documented = {word for name, _ in hook.parsers() for word in name.split(" | ")}
    assert dispatched == documented
    for name, _ in hook.parsers():
        assert f"## `{name}`" in pages["reference/cli.md"]


def test_every_option_of_every_parser_is_on_the_cli_page(pages):
    page = pages["reference/cli.md"]
    count = 0
    for name, parser in hook.parsers():
        section = page.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            count += 1
            for flag in action.option_strings:
                assert _code(flag) in section, (name, flag)
            if not action.option_strings:
                assert _code(action.metavar or action.dest) in section, (name, action.dest)
            if action.default not in (None, False, argparse.SUPPRESS):
                assert _code(str(action.default)) in section, (name, action.dest, action.default)
            if action.help:
                assert _rendered(action.help.replace("%%", "%"))[:25] in section, (name, action.dest)
            for choice in action.choices or ():
                assert _code(str(choice)) in section, (name, action.dest, choice)
    assert count > 40


def test_the_cli_parsers_are_the_ones_the_commands_run():
    # build_parser() is what main() parses with: `--help` prints the documented options.
    from temporal_median_cli import cli

    for command in ("run", "plan", "timeline", "sample", "status"):
        out = subprocess.run([sys.executable, "-m", "temporal_median_cli", command, "--help"],
                             capture_output=True, text=True, cwd=ROOT, check=True).stdout
        parser = next(p for name, p in hook.parsers() if command in name.split(" | "))
        assert parser.prog in out
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in out, (command, flag)
    assert cli.main(["--help"]) == 0


# ---- settings -------------------------------------------------------------------------------


def test_every_setting_is_read_by_its_table_and_on_the_page(pages):
    page = pages["reference/settings.md"]
    assert sorted(v.field for v in VARIABLES) == sorted(Settings.__dataclass_fields__)
    assert Settings.from_env({}) == Settings()
    for variable in VARIABLES:
        assert f"| {_code(variable.name)} | {_code(variable.default)} | " in page
        # Each variable, and only it, sets its field.
        assert getattr(Settings.from_env({variable.name: variable.default}), variable.field) == getattr(
            Settings(), variable.field)


def test_no_tm_variable_is_read_outside_the_table():
    named = set()
    for package in ("temporal_median", "localcloud", "temporal_median_cli", "functions"):
        for path in (ROOT / package).rglob("*.py"):
            named |= set(re.findall(r"\bTM_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert named <= {v.name for v in VARIABLES}, named - {v.name for v in VARIABLES}
    deployed = {k for k in hook._deployed() if k.startswith("TM_")}
    assert deployed <= {v.name for v in VARIABLES}


def test_a_bad_setting_names_its_variable():
    for name, value in (("TM_MAX_INPUTS", "many"), ("TM_LOG_LEVEL", "loud"), ("TM_ALLOW_LOCAL_PATHS", "maybe"),
                        ("TM_READ_THREADS", "-1"), ("TM_MEDIAN_MEMORY", "lots")):
        with pytest.raises(InvalidRequest, match=name):
            Settings.from_env({name: value})


# ---- Terraform ------------------------------------------------------------------------------


def test_every_terraform_variable_and_output_is_on_the_page(pages):
    page = pages["reference/terraform.md"]
    config = hook.terraform_config()
    assert len(config.variables) > 20 and len(config.outputs) > 5
    for name, body in config.variables.items():
        assert f"### `{name}`" in page
        assert _rendered(body["description"])[:40] in page, name
        for rule in body.get("validation", []):
            assert _rendered(rule["error_message"])[:40] in page, name
    for name in config.outputs:
        assert f"| {_code(name)} | " in page


# ---- the pages build ------------------------------------------------------------------------


def test_the_reference_pages_build_strictly(tmp_path):
    """mkdocs build --strict of the reference section alone (about 10 s), with mkdocs.yml's theme,
    plugins and extensions: the rest of the site is `make docs`'s."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    reference = next(section["Reference"] for section in config["nav"] if isinstance(section, dict)
                     and "Reference" in section)
    config.update(docs_dir=str(ROOT / "docs"), site_dir=str(tmp_path / "site"), nav=[{"Reference": reference}],
                  hooks=[str(HOOK)], exclude_docs="/*\n!/reference/\n")
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            plugin["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT)]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(path)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    for uri in [*hook.PAGES, "reference/python.md"]:
        assert (tmp_path / "site" / uri.replace(".md", "") / "index.html").is_file(), uri


def test_the_fields_module_is_what_the_request_module_uses():
    from temporal_median.job import request

    assert request._REQUEST_KEYS == names(request_fields.REQUEST_FIELDS)
