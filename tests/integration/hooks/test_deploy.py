"""deploy/: both overlays build with kustomize, every object validates, and they match the emulator's view."""
from __future__ import annotations

import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from contract.podstatus import RUNTIME_CLUSTER_ROLE
from hooks.tools.emulated import controllers
from hooks.core.settings import CLAIM_APIS
from tests.integration.hooks.hooks_harness import EXAMPLES, ROOT, crd_schemas

KUBECTL = shutil.which("kubectl")


def _build(overlay: str) -> list[dict]:
    # The machine image ships kubectl (with kustomize v5); a missing one is a failure, never a skip.
    assert KUBECTL, "kubectl with kustomize >= v5 is needed: install kubectl (e.g. apt-get install kubectl from the Kubernetes apt repo)"
    out = subprocess.run([KUBECTL, "kustomize", str(ROOT / "deploy" / "overlays" / overlay)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _check_custom(obj: dict, schemas: dict[str, dict]) -> None:
    schema = schemas[f"{obj['kind']}.{obj['apiVersion']}"]
    jsonschema.validate(obj, schema)


@pytest.mark.parametrize("overlay", ["machine", "nodeclaim"])
def test_overlay_builds_and_every_object_validates(overlay):
    objs = _build(overlay)
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(["Namespace", "CustomResourceDefinition", "CustomResourceDefinition", "CompositeController",
                            "CompositeController", "ServiceAccount", "Deployment", "Service",
                            "PodDisruptionBudget", "NodeProvisioner", "ClusterRole", "ClusterRole",
                            "ClusterRoleBinding"])
    schemas = crd_schemas()
    for obj in objs:
        if obj["apiVersion"].startswith(("metacontroller.k8s.io/", "kaito.sh/")):
            continue
        for version in ("1.30", "1.37"):
            kubernetes_validate.validate(obj, version, strict=True)
    np = next(o for o in objs if o["kind"] == "NodeProvisioner")
    _check_custom(np, schemas)
    # One source of truth: the overlay's KAITO_CLAIM_API (with the controller's child kind), no spec copy.
    assert np["metadata"]["name"] == "default" and "claimApi" not in np["spec"]

    hooks = next(o for o in objs if o["kind"] == "Deployment")
    pod = hooks["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KAITO_CLAIM_API"] == overlay
    assert hooks["spec"]["replicas"] == 2 and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["securityContext"]["runAsNonRoot"] is True

    # The CompositeControllers are exactly what the emulator-driven tests run against.
    got = {o["metadata"]["name"]: o for o in objs if o["kind"] == "CompositeController"}
    for want in controllers(CLAIM_APIS[overlay]):
        have = got[want["metadata"]["name"]]
        have["metadata"].pop("labels", None)
        assert have == want


def test_serving_pods_may_patch_only_pod_status_and_metacontroller_may_bind_only_that_role():
    objs = _build("nodeclaim")
    roles = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ClusterRole"}
    # the role each Workspace's RoleBinding names (contract) is shipped, and grants pods/status get/patch only
    runtime = roles[RUNTIME_CLUSTER_ROLE]
    assert runtime["rules"] == [{"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get", "patch"]}]
    mc = roles["kaito-metacontroller"]
    binds = [r for r in mc["rules"] if "bind" in r["verbs"]]
    assert binds == [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                      "resourceNames": [RUNTIME_CLUSTER_ROLE], "verbs": ["bind"]}]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in mc["rules"])
    granted = {res for r in mc["rules"] if "create" in r["verbs"] for res in r["resources"]}
    assert granted == {"serviceaccounts", "rolebindings"}
    [crb] = [o for o in objs if o["kind"] == "ClusterRoleBinding"]
    assert crb["roleRef"]["name"] == "kaito-metacontroller"
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "metacontroller", "namespace": "metacontroller"}]
    # the Workspace controller owns what the hooks emit for that
    [ws] = [o for o in objs if o["kind"] == "CompositeController" and o["metadata"]["name"] == "kaito-workspace"]
    rules = {(r["apiVersion"], r["resource"]) for r in ws["spec"]["childResources"]}
    assert {("v1", "serviceaccounts"), ("rbac.authorization.k8s.io/v1", "rolebindings")} <= rules


def test_examples_match_our_crd_schema():
    schemas = crd_schemas()
    paths = sorted(EXAMPLES.rglob("*.yaml"))
    assert paths
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion", "").startswith("kaito.sh/"):
                _check_custom(doc, schemas)


def test_crd_schema_rejects_what_it_should():
    schemas = crd_schemas()
    bad = {"apiVersion": "kaito.sh/v1alpha1", "kind": "NodeProvisioner", "metadata": {"name": "x"},
           "spec": {"claimApi": "ec2"}}
    with pytest.raises(jsonschema.ValidationError):
        _check_custom(bad, schemas)
