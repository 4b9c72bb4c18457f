"""A failed fetch in a Workspace-driven adapter change reaches the Workspace status, end to end on this machine:
`kaito up -f` (a real subprocess on an embedded Ray, a real docker-registry) runs as if in a pod; its replica
patches the condition kaito.sh/AdaptersAvailable on its pod; the Workspace status hook, given that pod,
reports AdaptersReady False naming the pod, the adapter and why, while InferenceReady stays True.

The kube-apiserver is the one stand-in (tests/support/apiserver.py; no API server runs here): it follows the
documented pod status API (path, GET/PATCH, the strategic-merge media type, bearer tokens, TLS with a CA this
test generates, conditions merged by type). Everything else is real.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import httpx
import pytest
import yaml

import artifacts
from contract.podstatus import pod_condition
from tests.integration.serving.test_kaito_up import run_up
from tests.integration.serving.test_pod_status_reporter import wait_for
from tests.support.apiserver import ApiServer
from tests.support.registry import registry_fixture
from tests.support.request_loop import PROMPT

pytestmark = pytest.mark.slow
registry = registry_fixture()
NS, WS, ADAPTER = "default", "capitals", "fr"
POD = f"{WS}-5f7c9d8b4-x2x7q"


def workspace(path: Path, image: str) -> dict:
    doc = {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace", "metadata": {"name": WS, "namespace": NS},
           "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": "tiny"}}},
           "inference": {"preset": {"name": "tiny"}, "adapters": [{"source": {"name": ADAPTER, "image": image}}]}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, path)  # as an editor saves
    return doc


def complete(base: str) -> str:
    r = httpx.post(base + "/v1/completions", timeout=30,
                   json={"model": ADAPTER, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "ignore_eos": True})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def card(base: str) -> dict:
    return {m["id"]: m for m in httpx.get(base + "/v1/models", timeout=10).json()["data"]}[ADAPTER]


def workspace_status(ws_doc: dict, pod: dict) -> dict[str, dict]:
    """The Workspace status hook's answer for a world whose serving pod is `pod` (as the API server has it)."""
    from tests.unit.hooks.test_pod_status import conds, sync_with_pods

    ws = copy.deepcopy(ws_doc)
    ws["metadata"].pop("namespace")
    reply, _ = sync_with_pods(ws, [pod])
    return conds(reply)


def test_a_failed_workspace_driven_fetch_shows_in_the_workspace_status_while_the_old_set_serves(
        registry, tmp_path, port, monkeypatch):
    from tinymodel import build_adapter, ensure_tiny_model

    cache = tmp_path / "cache"
    base_model = ensure_tiny_model(cache)
    good, other = (build_adapter(base_model, tmp_path / f"adapter-{s}", seed=s) for s in (1, 2))
    host = registry.host
    good_digest = artifacts.push(good, f"oci://{host}/adapters/fr:v1")
    bad = artifacts.push(other, f"oci://{host}/adapters/fr:v2")
    # v2 lands with a broken blob (one v1 does not share): its tag resolves, its fetch cannot verify
    def layers(digest):
        return {layer["digest"] for layer in httpx.get(
            f"{registry.url}/v2/adapters/fr/manifests/{digest}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()["layers"]}
    only_v2 = layers(bad) - layers(good_digest)
    assert only_v2
    for digest in only_v2:
        blob = registry.blob_path(digest)
        blob.write_bytes(b"not the adapter" + blob.read_bytes()[15:])

    ws_file = tmp_path / "workspace.yaml"
    doc = workspace(ws_file, f"{host}/adapters/fr:v1")
    with ApiServer(tmp_path / "api") as api:
        api.add_pod(NS, POD, labels={"kaito.sh/workspace": WS})
        sa = api.service_account(tmp_path / "serviceaccount", NS, name=f"{WS}-runtime")
        for key, value in api.environ(sa, NS, POD).items():  # what the kubelet gives the pod; kaito up inherits it
            monkeypatch.setenv(key, value)
        seen: dict = {}

        def reported():
            return pod_condition(api.pod(NS, POD))

        def check(base: str) -> None:
            first = wait_for(lambda: (c := reported()) and c["status"] == "True" and c, 30, "the first report")
            assert card(base)["digest"] == good_digest
            before = complete(base)
            broken = workspace(ws_file, f"{host}/adapters/fr:v2")  # the Workspace-driven change
            failed = wait_for(lambda: (c := reported()) and c["status"] == "False" and c, 30, "the failure")
            assert failed["reason"] == "AdapterUnavailable"
            assert failed["message"].startswith(f"adapter {ADAPTER} is unavailable: ") and "v2" in failed["message"]
            shown = card(base)
            assert shown["available"] is False and shown["digest"] == good_digest  # the old version serves on
            assert complete(base) == before
            assert api.pod(NS, POD)["status"]["conditions"][0] == {  # the kubelet's own conditions untouched
                "type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T00:00:00Z"}
            seen["failing"] = workspace_status(broken, api.pod(NS, POD))
            workspace(ws_file, f"{host}/adapters/fr:v1")  # the user takes the change back
            wait_for(lambda: reported()["status"] == "True", 30, "the recovery")
            assert first["lastTransitionTime"] <= reported()["lastTransitionTime"]
            seen["fixed"] = workspace_status(doc, api.pod(NS, POD))

        out = run_up(cache, port, "-f", str(ws_file), "--adapter-resolve-interval", "0", check=check)
        assert (sa / "token").read_text() not in "\n".join(out)  # the token never reaches the output

    failing = seen["failing"]
    assert failing["AdaptersReady"]["status"] == "False" and failing["AdaptersReady"]["reason"] == "AdapterUnavailable"
    message = failing["AdaptersReady"]["message"]
    assert message.startswith(f"pod {POD}: adapter {ADAPTER} is unavailable: ") and "v2" in message, message
    assert failing["InferenceReady"]["status"] == "True" and failing["WorkspaceReady"]["status"] == "True"
    assert seen["fixed"]["AdaptersReady"]["status"] == "True"
    # one patch per change (available, unavailable, available again), each the documented call
    patches = api.patches()
    assert [p.body["status"]["conditions"][0]["status"] for p in patches] == ["True", "False", "True"], \
        [p.body for p in patches]
    assert all(p.authorized and p.content_type == "application/strategic-merge-patch+json"
               and p.path == f"/api/v1/namespaces/{NS}/pods/{POD}/status" for p in patches)
    assert all(c.authorized for c in api.calls), [(c.method, c.code) for c in api.calls]
    assert {c.code for c in api.calls} == {200}
