"""Every KAITO admission rule refuses its example and accepts the neighbour, in CEL and in Python.

The CEL side evaluates the generated CRD's x-kubernetes-validations with cel-python; the Python
side is `validate_workspace`. Both must agree and both must give the rule's message.
"""
import copy

import pytest
import yaml

from hooks.tools import crdgen

from hooks.core import rules
from hooks.core.validation import validate_workspace
from tests.support import crd_cel
from tests.unit.hooks.conftest import load_ready
from tests.unit.hooks.rule_cases import CASES

SCHEMA = yaml.safe_load(crdgen.render()["kaito.sh_workspaces.yaml"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _build(case):
    rule_id, base, refused_edit, accepted_edit, old_edit = case
    original = load_ready(base)
    old = old_edit(copy.deepcopy(original)) if old_edit else None
    return rule_id, refused_edit(copy.deepcopy(original)), accepted_edit(copy.deepcopy(original)), old


def test_every_rule_has_a_case():
    assert sorted(c[0] for c in CASES) == sorted(r.id for r in rules.RULES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cel_rule_refuses_and_accepts(case):
    rule_id, refused, accepted, old = _build(case)
    rule = rules.BY_ID[rule_id]
    refused_by = crd_cel.violations(SCHEMA, refused, old)
    assert rule.message in [v.message for v in refused_by], f"CEL did not refuse: {refused_by}"
    accepted_by = crd_cel.violations(SCHEMA, accepted, old)
    assert rule.message not in [v.message for v in accepted_by], accepted_by


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_python_rule_refuses_and_accepts(case):
    rule_id, refused, accepted, old = _build(case)
    rule = rules.BY_ID[rule_id]
    messages = [e.message for e in validate_workspace(refused, old).errors]
    assert any(m.startswith(rule.message) for m in messages), messages
    messages = [e.message for e in validate_workspace(accepted, old).errors]
    assert not any(m.startswith(rule.message) for m in messages), messages


def test_accepted_neighbours_pass_every_cel_rule():
    """The neighbours are fully valid objects, so a rule that refuses too much shows up here."""
    for case in CASES:
        _, _, accepted, old = _build(case)
        assert crd_cel.violations(SCHEMA, accepted, old) == [], case[0]


def test_cel_string_literals_with_backslashes_are_raw():
    """cel-go (the API server) rejects a CRD whose rule has an unknown escape such as '\\.' in a
    plain string literal; cel-python accepts it, so this is checked on the rule text."""
    import re

    for rule in rules.RULES:
        for prefix, body in re.findall(r"(r?)'([^']*)'", rule.cel):
            assert prefix == "r" or "\\" not in body, (rule.id, body)
