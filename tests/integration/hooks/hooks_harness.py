"""Helpers shared by the hook integration tests (imported by name: tests have no packages)."""
from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

from hooks.core.settings import CLAIM_APIS
from metacontroller.apply import LAST_APPLIED, last_applied_of
from tests.support.seeds import with_real_references

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
WS_API = "kaito.sh/v1alpha1"
BUILTIN_CHILD_KINDS = ("Deployment", "Service", "ConfigMap", "Job")


def load_example(rel: str, namespace: str = "default", name: str | None = None) -> dict:
    """An example as a user applies it: the seeds' placeholders filled in (tests.support.seeds)."""
    obj = with_real_references(yaml.safe_load((EXAMPLES / rel).read_text()))
    obj["metadata"]["namespace"] = namespace
    if name:
        obj["metadata"]["name"] = name
    return obj


def workspace(world, name: str, namespace: str = "default") -> dict:
    return world.get(WS_API, "Workspace", name, namespace)


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def cond_status(world, name: str, namespace: str = "default") -> dict[str, str]:
    return {k: v["status"] for k, v in conditions(workspace(world, name, namespace)).items()}


def children(world, namespace: str, ws_name: str) -> dict[str, dict]:
    """`Kind/name` -> object for every workload child of one workspace."""
    out = {}
    for av, kind in (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap"), ("batch/v1", "Job")):
        for o in world.cluster.list(av, kind, namespace=namespace):
            if o["metadata"].get("labels", {}).get("kaito.sh/workspace") == ws_name:
                out[f"{kind}/{o['metadata']['name']}"] = o
    return out


def claims(world, claim_api: str) -> list[dict]:
    api = CLAIM_APIS[claim_api]
    return world.cluster.list(api.api_version, api.kind)


def validate_strict(objs) -> int:
    """kubernetes-validate --strict for 1.30 and 1.37 on every built-in object, as the hooks sent it."""
    n = 0
    for obj in objs:
        if obj["kind"] not in BUILTIN_CHILD_KINDS:
            continue
        sent = last_applied_of(obj) or obj
        for version in ("1.30", "1.37"):
            kubernetes_validate.validate(sent, version, strict=True)
        n += 1
    return n


def crd_schemas() -> dict[str, dict]:
    """`Kind.group/version` -> openAPIV3Schema of our generated CRDs."""
    out = {}
    for path in (ROOT / "deploy" / "crds").glob("kaito.sh_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            out[f"{crd['spec']['names']['kind']}.{crd['spec']['group']}/{version['name']}"] = \
                version["schema"]["openAPIV3Schema"]
    return out


def validate_parents(world) -> None:
    """Workspaces and NodeProvisioners, status included, against our CRD schemas; nothing the hooks
    write may be pruned (the API server drops status fields the schema does not declare)."""
    schemas = crd_schemas()
    for kind in ("Workspace", "NodeProvisioner"):
        for obj in world.cluster.list(WS_API, kind):
            schema = schemas[f"{kind}.{WS_API}"]
            jsonschema.validate(obj, schema)
            declared = set(schema["properties"]["status"].get("properties", {}))
            assert set(obj.get("status") or {}) <= declared, (kind, obj["status"].keys())


def validate_emitted(world) -> int:
    """Validate every distinct child shape in the world (names masked so 50 similar workspaces cost one)."""
    validate_parents(world)
    seen, objs = set(), []
    for obj in world.cluster.all_objects():
        if obj["kind"] not in BUILTIN_CHILD_KINDS or not obj["metadata"].get("ownerReferences"):
            continue
        owner = obj["metadata"]["ownerReferences"][0]["name"]
        raw = obj["metadata"].get("annotations", {}).get(LAST_APPLIED, "")
        key = re.sub(r"aks-ws[0-9a-f]{9}-vmss000000", "NODE", raw.replace(owner, "WS"))
        if key not in seen:
            seen.add(key)
            objs.append(obj)
    return validate_strict(objs)
