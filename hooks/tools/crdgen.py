"""Generate deploy/crds/ from the API models (contract.workspace, hooks.core.api) and the admission rules (hooks.core.rules).

`kaito gen-crds` rewrites the files; `kaito gen-crds --check` exits 1 when they are stale (the
test suite runs the same comparison), so the CRDs cannot drift from what the hooks enforce.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from hooks.core import rules as admission
from contract.workspace import GROUP, VERSION, Workspace
from hooks.core.api import NodeProvisioner

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "deploy" / "crds"
_DROP = {"title", "additionalProperties", "$defs", "discriminator"}


def _structural(node: Any, defs: dict) -> Any:
    """Pydantic JSON schema -> Kubernetes structural OpenAPI v3 (refs inlined, nulls folded)."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        return _structural({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            return _structural({**options[0], **outer}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and (value is None or isinstance(value, (dict, list)))):
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("items",):
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    additional = node.get("additionalProperties")
    if additional is True or (isinstance(additional, dict) and not additional):
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(additional, dict):
        out["additionalProperties"] = _structural(additional, defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "const" in out:
        out = {"type": "string", **{k: v for k, v in out.items() if k != "const"}}
    return out


def openapi_schema(model) -> dict:
    raw = model.model_json_schema(by_alias=True)
    schema = _structural(raw, raw.get("$defs", {}))
    props = schema["properties"]
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = {"type": "object"}
    return schema


def _node_at(schema: dict, path: str) -> dict:
    """The schema node at a rule path such as "inference.adapters[]" ("[]" = the list's items)."""
    node = schema
    for step in filter(None, path.split(".")):
        if step.endswith("[]"):
            node = node["properties"][step[:-2]]["items"]
        else:
            node = node["properties"][step]
    return node


def workspace_schema() -> dict:
    schema = openapi_schema(Workspace)
    for rule in admission.RULES:
        node = _node_at(schema, rule.path)
        node.setdefault("x-kubernetes-validations", []).append({"rule": rule.cel, "message": rule.message})
    return schema


def _condition_column(name: str, condition: str, priority: int = 0) -> dict:
    column = {"name": name, "type": "string", "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status'}
    if priority:
        column["priority"] = priority
    return column


def _crd(plural: str, kind: str, scope: str, schema: dict, columns: list[dict], short_names: list[str]) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      **({"shortNames": short_names} if short_names else {})},
            "scope": scope,
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
            }],
        },
    }


def workspace_crd() -> dict:
    columns = [
        {"name": "Instance", "type": "string", "jsonPath": ".resource.instanceType"},
        _condition_column("ResourceReady", "ResourceReady"),
        _condition_column("InferenceReady", "InferenceReady"),
        _condition_column("WorkspaceReady", "WorkspaceReady"),
        _condition_column("JobStarted", "JobStarted", priority=1),
        _condition_column("WorkspaceSucceeded", "WorkspaceSucceeded", priority=1),
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _crd("workspaces", "Workspace", "Namespaced", workspace_schema(), columns, ["wk", "wks"])


def nodeprovisioner_crd() -> dict:
    columns = [
        {"name": "ClaimAPI", "type": "string", "jsonPath": ".status.claimApi"},
        _condition_column("Ready", "Ready"),
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _crd("nodeprovisioners", "NodeProvisioner", "Cluster", openapi_schema(NodeProvisioner), columns, ["np"])


def render() -> dict[str, str]:
    """File name -> YAML text of every generated CRD."""
    header = "# Generated by `kaito gen-crds` from contract/workspace.py, hooks/core/api.py and hooks/core/rules.py. Do not edit.\n"
    dump = lambda obj: header + yaml.safe_dump(obj, sort_keys=False, width=120)  # noqa: E731
    return {
        f"{GROUP}_workspaces.yaml": dump(workspace_crd()),
        f"{GROUP}_nodeprovisioners.yaml": dump(nodeprovisioner_crd()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaito gen-crds", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="directory to write (default: deploy/crds)")
    parser.add_argument("--check", action="store_true", help="only report whether the files are up to date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print("stale CRDs (run `kaito gen-crds`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    print("wrote " + ", ".join(map(str, stale)) if stale else "CRDs are up to date")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
