"""The emulator's reconcile semantics, with an in-process hook (a function) in place of HTTP."""
from __future__ import annotations

import json

import pytest

from metacontroller.cluster import Cluster
from metacontroller.emulator import CompositeControllerEmulator
from metacontroller.errors import HookCallError

PARENT = {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace", "metadata": {"name": "p", "namespace": "ns"}}


def controller(method="InPlace", finalize=False, generate_selector=True):
    hooks = {"sync": {"version": "v2", "webhook": {"url": "http://hooks/sync"}}}
    if finalize:
        hooks["finalize"] = {"version": "v2", "webhook": {"url": "http://hooks/finalize"}}
    return {"apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController", "metadata": {"name": "c"},
            "spec": {"generateSelector": generate_selector,
                     "parentResource": {"apiVersion": "kaito.sh/v1alpha1", "resource": "workspaces"},
                     "childResources": [{"apiVersion": "v1", "resource": "configmaps", "updateStrategy": {"method": method}}],
                     "hooks": hooks}}


class Hook:
    """Scriptable hook: `reply` is returned as JSON; `fail` raises like a non-200 answer."""

    def __init__(self):
        self.reply = {"status": {"phase": "x"}, "children": []}
        self.fail = None
        self.requests = []

    def __call__(self, url, body, timeout):
        self.requests.append((url, body))
        if self.fail:
            raise HookCallError(self.fail)
        return self.reply if isinstance(self.reply, bytes) else json.dumps(self.reply).encode()


def cm(name, value):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}}


def setup(method="InPlace", **kw):
    cluster = Cluster()
    hook = Hook()
    emu = CompositeControllerEmulator(cluster, controller(method, **kw), transport=hook)
    parent = cluster.create(PARENT)
    return cluster, hook, emu, parent


def test_create_with_owner_reference_last_applied_and_status():
    cluster, hook, emu, parent = setup()
    hook.reply = {"status": {"phase": "ok"}, "children": [cm("a", "1")], "resyncAfterSeconds": 2.5}
    out = emu.reconcile(parent)
    assert out.ok and out.created == ["ConfigMap/ns/a"] and out.resync_after == 2.5
    child = cluster.get("v1", "ConfigMap", "a", "ns")
    ref = child["metadata"]["ownerReferences"][0]
    assert ref["uid"] == parent["metadata"]["uid"] and ref["controller"] and ref["blockOwnerDeletion"]
    assert json.loads(child["metadata"]["annotations"]["metacontroller.k8s.io/last-applied-configuration"])["data"] == {"v": "1"}
    assert child["metadata"]["labels"]["controller-uid"] == parent["metadata"]["uid"]
    status = cluster.get(*("kaito.sh/v1alpha1", "Workspace", "p", "ns"))["status"]
    assert status == {"phase": "ok", "observedGeneration": 1}
    # the sync request carries the observed child under its v2 keys
    emu.reconcile(parent)
    assert list(hook.requests[-1][1]["children"]["ConfigMap.v1"]) == ["ns/a"]


@pytest.mark.parametrize("method,same_uid,changed", [("InPlace", True, True), ("OnDelete", True, False),
                                                     ("Recreate", False, True)])
def test_update_strategies(method, same_uid, changed):
    cluster, hook, emu, parent = setup(method)
    hook.reply = {"status": {}, "children": [cm("a", "1")]}
    emu.reconcile(parent)
    uid = cluster.get("v1", "ConfigMap", "a", "ns")["metadata"]["uid"]
    hook.reply = {"status": {}, "children": [cm("a", "2")]}
    emu.reconcile(parent)
    emu.reconcile(parent)  # Recreate: deleted on one sync, created on the next
    child = cluster.get("v1", "ConfigMap", "a", "ns")
    assert (child["metadata"]["uid"] == uid) is same_uid
    assert (child["data"]["v"] == "2") is changed


def test_omitted_children_are_deleted():
    cluster, hook, emu, parent = setup()
    hook.reply = {"status": {}, "children": [cm("a", "1"), cm("b", "1")]}
    emu.reconcile(parent)
    hook.reply = {"status": {}, "children": [cm("a", "1")]}
    out = emu.reconcile(parent)
    assert out.deleted == ["ConfigMap/ns/b"] and cluster.get("v1", "ConfigMap", "b", "ns") is None


@pytest.mark.parametrize("reply", [b"not json", b'{"status": {}, "children": [], "bogus": true}', None])
def test_failed_calls_change_nothing(reply):
    cluster, hook, emu, parent = setup()
    hook.reply = {"status": {"phase": "ok"}, "children": [cm("a", "1")]}
    emu.reconcile(parent)
    before = list(cluster.all_objects())
    hook.reply = reply if reply is not None else {"children": []}
    hook.fail = None if reply is not None else "unsupported status code: 500 body: boom"
    out = emu.reconcile(parent)
    assert not out.ok and emu.events[-1].reason == "SyncError"
    assert list(cluster.all_objects()) == before


def test_child_of_an_undeclared_kind_is_an_error():
    cluster, hook, emu, parent = setup()
    hook.reply = {"status": {}, "children": [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}]}
    out = emu.reconcile(parent)
    assert not out.ok and "not a child resource" in out.error


def test_namespaced_parent_cannot_own_other_namespaces():
    cluster, hook, emu, parent = setup()
    child = cm("a", "1")
    child["metadata"]["namespace"] = "elsewhere"
    hook.reply = {"status": {}, "children": [child]}
    assert "outside the parent's namespace" in emu.reconcile(parent).error


def test_deleting_the_parent_garbage_collects_children():
    cluster, hook, emu, parent = setup()
    hook.reply = {"status": {}, "children": [cm("a", "1")]}
    emu.reconcile(parent)
    cluster.delete("kaito.sh/v1alpha1", "Workspace", "p", "ns")
    assert cluster.get("v1", "ConfigMap", "a", "ns") is None


def test_finalize_hook_runs_until_finalized():
    cluster, hook, emu, parent = setup(finalize=True)
    hook.reply = {"status": {}, "children": [cm("a", "1")]}
    emu.reconcile(parent)
    assert cluster.get("kaito.sh/v1alpha1", "Workspace", "p", "ns")["metadata"]["finalizers"] == \
        ["metacontroller.io/compositecontroller-c"]
    cluster.delete("kaito.sh/v1alpha1", "Workspace", "p", "ns")
    assert cluster.get("kaito.sh/v1alpha1", "Workspace", "p", "ns")["metadata"]["deletionTimestamp"]
    hook.reply = {"status": {}, "children": [], "finalized": False}
    emu.reconcile(parent)
    assert hook.requests[-1][0].endswith("/finalize") and hook.requests[-1][1]["finalizing"] is True
    assert cluster.get("kaito.sh/v1alpha1", "Workspace", "p", "ns") is not None
    hook.reply = {"status": {}, "children": [], "finalized": True}
    emu.reconcile(parent)
    assert cluster.get("kaito.sh/v1alpha1", "Workspace", "p", "ns") is None


def test_service_urls_and_base_url_override():
    cc = controller()
    cc["spec"]["hooks"]["sync"]["webhook"] = {"service": {"name": "h", "namespace": "sys", "port": 8080},
                                              "path": "/x/sync", "timeout": "500ms"}
    emu = CompositeControllerEmulator(Cluster(), cc)
    hook = cc["spec"]["hooks"]["sync"]
    assert emu._url(hook) == "http://h.sys:8080/x/sync" and emu._timeout(hook) == 0.5
    emu = CompositeControllerEmulator(Cluster(), cc, base_url="http://127.0.0.1:9/")
    assert emu._url(hook) == "http://127.0.0.1:9/x/sync"
