"""The Flask layer in-process: routing, status codes, strict v2 reply keys, settings."""
from __future__ import annotations

import json

import pytest

from hooks.shell.app import app
from hooks.core.errors import SettingsError
from hooks.core.settings import Settings

V2_KEYS = {"status", "children", "resyncAfterSeconds", "finalized"}


@pytest.fixture
def client():
    return app.test_client()


def test_workspace_endpoints(client, inference_ws):
    inference_ws["metadata"]["namespace"] = "default"
    r = client.post("/workspace/customize", json={"controller": {}, "parent": inference_ws})
    assert r.status_code == 200 and set(r.get_json()) == {"relatedResources"}
    r = client.post("/workspace/sync", json={"controller": {}, "parent": inference_ws, "children": {}, "related": {}})
    assert r.status_code == 200 and set(r.get_json()) <= V2_KEYS


def test_nodeprovisioner_endpoints(client, inference_ws):
    parent = {"apiVersion": "kaito.sh/v1alpha1", "kind": "NodeProvisioner", "metadata": {"name": "default"}, "spec": {}}
    r = client.post("/nodeprovisioner/customize", json={"parent": parent})
    assert [x["resource"] for x in r.get_json()["relatedResources"]] == ["workspaces", "nodes"]
    inference_ws["metadata"]["namespace"] = "default"
    key = f"default/{inference_ws['metadata']['name']}"
    r = client.post("/nodeprovisioner/sync", json={"parent": parent, "related": {
        "Workspace.kaito.sh/v1alpha1": {key: inference_ws}, "Node.v1": {}}})
    assert r.status_code == 200 and len(r.get_json()["children"]) == 1


def test_bad_nodeprovisioner_spec_keeps_every_claim_and_says_why(client):
    claim = {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": "ws0123456789", "labels": {}},
             "spec": {"taints": []}}
    parent = {"apiVersion": "kaito.sh/v1alpha1", "kind": "NodeProvisioner", "metadata": {"name": "default"},
              "spec": {"claimApi": "ec2"}}
    r = client.post("/nodeprovisioner/sync", json={
        "parent": parent, "children": {"NodeClaim.karpenter.sh/v1": {"ws0123456789": claim}},
        "related": {"Workspace.kaito.sh/v1alpha1": {}, "Node.v1": {}}})
    assert r.status_code == 200 and r.get_json()["children"] == [claim]
    ready = next(c for c in r.get_json()["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec" and "spec.claimApi" in ready["message"]
    r = client.post("/nodeprovisioner/customize", json={"parent": parent})
    assert r.status_code == 422 and "parent.spec.claimApi" in r.get_json()["error"]


def test_errors_name_the_problem(client):
    r = client.post("/workspace/sync", data=b"{", content_type="application/json")
    assert r.status_code == 400 and "not valid JSON" in r.get_json()["error"]
    r = client.post("/workspace/sync", data=json.dumps({"parent": {}, "related": {}}), content_type="application/json")
    assert r.status_code == 422 and "parent.metadata: Field required" in r.get_json()["error"]
    r = client.post("/workspace/sync", data=json.dumps({"parent": {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace",
                                                                  "metadata": {"name": "a", "generation": "2"}},
                                                       "related": {}}), content_type="application/json")
    assert r.status_code == 422 and "parent.metadata.generation: Input should be a valid integer" in r.get_json()["error"]
    assert client.get("/workspace/sync").status_code == 405


def test_one_claim_api_default_and_no_spec_default():
    from hooks.core.api import NodeProvisionerSpec
    from hooks.core.settings import DEFAULT_CLAIM_API

    assert Settings().claim_api.name == Settings.from_env({}).claim_api.name == DEFAULT_CLAIM_API == "nodeclaim"
    assert NodeProvisionerSpec().claim_api is None  # the overlay decides; the spec field only checks


def test_settings_from_env():
    s = Settings.from_env({"KAITO_CLAIM_API": "Machine", "KAITO_RUNTIME_IMAGE": "r/x:1"})
    assert s.claim_api.kind == "Machine" and s.runtime_image == "r/x:1"
    with pytest.raises(SettingsError, match="accepted: machine, nodeclaim"):
        Settings.from_env({"KAITO_CLAIM_API": "ec2"})
