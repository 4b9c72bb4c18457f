"""Evaluate a CRD's x-kubernetes-validations the way the API server does, with cel-python.

The API server defaults an object from the schema, then evaluates each rule with `self` bound to
the node the rule sits on (every item, for rules under `items`) and, for transition rules, with
`oldSelf` bound to the same node of the old object; a transition rule is skipped when either side
lacks the node. This is what lets a test catch a typo in a rule before a cluster does.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import celpy

_ENV = celpy.Environment()
_PROGRAMS: dict[str, object] = {}


@dataclass(frozen=True)
class Violation:
    path: str
    rule: str
    message: str


def apply_defaults(obj, schema):
    """Fill `default`s from the schema into a copy of obj (structural defaulting)."""
    obj = copy.deepcopy(obj)
    _default(obj, schema)
    return obj


def _default(node, schema):
    if isinstance(node, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in node and "default" in sub:
                node[name] = copy.deepcopy(sub["default"])
            if name in node:
                _default(node[name], sub)
    elif isinstance(node, list) and "items" in schema:
        for item in node:
            _default(item, schema["items"])


def _program(rule: str):
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule))
    return _PROGRAMS[rule]


def _evaluate(rule: str, self_value, old_value) -> bool:
    activation = {"self": celpy.json_to_cel(self_value)}
    if old_value is not None:
        activation["oldSelf"] = celpy.json_to_cel(old_value)
    try:
        result = _program(rule).evaluate(activation)
    except celpy.CELEvalError:
        return False  # a runtime error rejects the object, as in the API server
    return not isinstance(result, celpy.CELEvalError) and bool(result)


def violations(schema: dict, obj: dict, old: dict | None = None) -> list[Violation]:
    obj = apply_defaults(obj, schema)
    old = apply_defaults(old, schema) if old is not None else None
    found: list[Violation] = []
    _walk(schema, obj, old, "", found)
    return found


def _walk(schema, node, old_node, path, found):
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old_node is None:
            continue
        if not _evaluate(rule["rule"], node, old_node if transition else None):
            found.append(Violation(path, rule["rule"], rule["message"]))
    if isinstance(node, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in node:
                old_sub = old_node.get(name) if isinstance(old_node, dict) else None
                _walk(sub, node[name], old_sub, f"{path}.{name}".lstrip("."), found)
    elif isinstance(node, list) and "items" in schema:
        # Items are correlated by index only for map lists; ours are atomic lists, so no oldSelf.
        for i, item in enumerate(node):
            _walk(schema["items"], item, None, f"{path}[{i}]", found)
