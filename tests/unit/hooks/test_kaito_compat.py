"""KAITO's own verdicts: its v0.3.2 validation table cases and its public example Workspaces.

Each case (kaito_compat/*.yaml) carries KAITO's verdict; ours must equal it unless the case says
why it differs by choice. The CRD's CEL rules must not refuse anything the Python validator lets
through, and the README's measurement is computed from these files.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pydantic
import pytest
import yaml

from hooks.tools import crdgen
from contract.workspace import Workspace
from hooks.core.validation import validate_workspace
from tests.support import crd_cel
from tests.unit.hooks.conftest import ROOT

HERE = Path(__file__).parent / "kaito_compat"
TABLE = yaml.safe_load((HERE / "v032_table_cases.yaml").read_text())["cases"]
EXAMPLES = yaml.safe_load((HERE / "examples.yaml").read_text())
CASES = [("table", c) for c in TABLE] + [(group, c) for group in ("v032", "head") for c in EXAMPLES[group]]
SCHEMA = yaml.safe_load(crdgen.render()["kaito.sh_workspaces.yaml"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _complete(doc: dict | None) -> dict | None:
    if doc is None:
        return None
    out = copy.deepcopy(doc)
    out.setdefault("apiVersion", "kaito.sh/v1alpha1")
    out.setdefault("kind", "Workspace")
    out.setdefault("metadata", {"name": "compat"})
    return out


def _fill(node, filled: dict):
    if isinstance(node, dict):
        return {k: _fill(v, filled) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, filled) for v in node]
    return filled.get(node, node) if isinstance(node, str) else node


def _ours(case) -> tuple[str, list[str]]:
    errors = validate_workspace(_complete(case["workspace"]), _complete(case.get("old"))).errors
    return ("invalid" if errors else "valid"), [str(e) for e in errors]


def _id(item):
    group, case = item
    return f"{group}:{case.get('go') or case['source']}"


@pytest.mark.parametrize("item", CASES, ids=_id)
def test_verdict_is_kaitos_or_differs_with_a_reason(item):
    _, case = item
    verdict, lines = _ours(case)
    expected = case.get("ours", case["kaito"])
    assert verdict == expected, lines
    assert ("differs" in case) == (expected != case["kaito"]), "a different verdict needs a reason, and only then"
    if verdict == "invalid":
        assert case.get("expect"), "say which error an invalid case expects"
    text = "\n".join(lines)
    for needle in case.get("expect", []):
        assert needle in text, lines


@pytest.mark.parametrize("item", [i for i in CASES if "filled" in i[1]], ids=_id)
def test_example_is_valid_once_its_placeholders_are_filled(item):
    _, case = item
    assert validate_workspace(_complete(_fill(case["workspace"], case["filled"]))).errors == []


def _schema_ok(doc: dict) -> bool:
    try:
        Workspace.model_validate(doc)
    except pydantic.ValidationError:
        return False
    return True


@pytest.mark.parametrize("item", CASES, ids=_id)
def test_cel_refuses_nothing_the_python_validator_accepts(item):
    """Admission (CEL) and the hooks agree: a CEL refusal is a Python refusal, with the same
    message once the schema itself is satisfied (before that Python reports the schema errors)."""
    _, case = item
    verdict, lines = _ours(case)
    ws = _complete(case["workspace"])
    violations = crd_cel.violations(SCHEMA, ws, _complete(case.get("old")))
    if violations:
        assert verdict == "invalid", violations
    if not _schema_ok(ws):
        return
    messages = [line.split(": ", 1)[-1] for line in lines]
    for violation in violations:
        assert any(m.startswith(violation.message) for m in messages), (violation, lines)


def tally() -> dict[str, tuple[int, int]]:
    """Group -> (cases whose verdict is KAITO's, cases)."""
    out = {}
    for group in ("table", "v032", "head"):
        cases = [c for g, c in CASES if g == group]
        out[group] = (sum(_ours(c)[0] == c["kaito"] for c in cases), len(cases))
    return out


def test_readme_reports_the_measurement():
    readme = (ROOT / "README.md").read_text()
    counts = tally()
    line = (f"KAITO v0.3.2 table cases: {counts['table'][0]} of {counts['table'][1]} agree; "
            f"KAITO v0.3.2 examples: {counts['v032'][0]} of {counts['v032'][1]}; "
            f"KAITO HEAD examples for the added presets: {counts['head'][0]} of {counts['head'][1]}")
    assert line in readme, f"put this line in README.md: {line}"
    for _, case in CASES:
        if "differs" in case:
            assert (case.get("go") or case["source"].split(" ")[0]) in readme, case
