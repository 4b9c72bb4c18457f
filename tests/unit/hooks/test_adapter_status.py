"""A failed Workspace-driven adapter fetch reaches the Workspace status: the serving runtime sets the pod
condition kaito.sh/AdaptersAvailable on its pod (serving/podcondition.py), the status hook turns the
workspace's pods' conditions into AdaptersReady while InferenceReady stays True (the old set serves).

Also: what the runtime needs for that is among the children (ServiceAccount, RoleBinding, downward API)."""
from __future__ import annotations

import json

import kubernetes_validate

from contract.podstatus import ADAPTERS_CONDITION, POD_NAME_ENV, POD_NAMESPACE_ENV, RUNTIME_CLUSTER_ROLE
from hooks.core import status
from tests.unit.hooks.test_pod_status import NS, T0, T1, conds, pod, running, sync_with_pods


def reporting(name, ws, state, message="", reason=None):
    c = {"type": ADAPTERS_CONDITION, "status": state, "lastTransitionTime": T0, "message": message,
         "reason": reason or ("AdaptersAvailable" if state == "True" else "AdapterUnavailable")}
    return pod(name, ws, containers=[running("serve")], conditions=[{"type": "Ready", "status": "True"}, c])


BROKEN = "adapter fr is unavailable: cannot fetch adapter 'fr' from oci://r.local/fr:2: digest mismatch"


def test_an_unavailable_adapter_is_named_with_its_pod_while_inference_stays_ready(adapters_ws):
    ws = adapters_ws["metadata"]["name"]
    pods = [reporting(f"{ws}-b", ws, "True", "every adapter is available"), reporting(f"{ws}-a", ws, "False", BROKEN)]
    reply, desired = sync_with_pods(adapters_ws, pods)
    c = conds(reply)
    assert c["AdaptersReady"]["status"] == "False" and c["AdaptersReady"]["reason"] == "AdapterUnavailable"
    assert c["AdaptersReady"]["message"] == f"pod {ws}-a: {BROKEN}"
    # the old set still serves: the pod stays Ready, and so do the workspace's inference conditions
    assert c["InferenceReady"]["status"] == "True" and c["WorkspaceReady"]["status"] == "True"
    assert "resyncAfterSeconds" not in reply  # the pods' next patch brings the next sync
    assert reply["children"] == desired
    assert [x["type"] for x in reply["status"]["conditions"]] == \
        ["ResourceReady", "InferenceReady", "AdaptersReady", "WorkspaceReady"]
    # same world, pods listed in another order: byte-identical status
    again, _ = sync_with_pods(adapters_ws, pods[::-1], reply["status"]["conditions"])
    assert json.dumps(again["status"], sort_keys=True) == json.dumps(reply["status"], sort_keys=True)


def test_pods_with_the_same_failure_are_named_together_in_name_order(adapters_ws):
    ws = adapters_ws["metadata"]["name"]
    other = "adapter de is unavailable: cannot fetch adapter 'de' from oci://r.local/de:1: HTTP 404"
    pods = [reporting(f"{ws}-c", ws, "False", BROKEN), reporting(f"{ws}-a", ws, "False", BROKEN),
            reporting(f"{ws}-b", ws, "False", other)]
    cond = status.adapters_condition(pods)
    assert cond.message == f"pods {ws}-a, {ws}-c: {BROKEN}; pod {ws}-b: {other}"


def test_recovery_moves_the_transition_time_and_a_deleting_pod_is_ignored(adapters_ws):
    ws = adapters_ws["metadata"]["name"]
    failing, _ = sync_with_pods(adapters_ws, [reporting(f"{ws}-a", ws, "False", BROKEN)])
    observed = [dict(c, lastTransitionTime=T0) for c in failing["status"]["conditions"]]  # written earlier
    gone = reporting(f"{ws}-a", ws, "False", BROKEN)
    gone["metadata"]["deletionTimestamp"] = T0  # a rollout's old pod
    fixed, _ = sync_with_pods(adapters_ws, [gone, reporting(f"{ws}-b", ws, "True", "every adapter is available")],
                              observed)
    after = conds(fixed)["AdaptersReady"]
    assert after["status"] == "True" and after["reason"] == "AdaptersAvailable"
    assert after["lastTransitionTime"] == T1  # it changed status now
    assert conds(fixed)["InferenceReady"]["lastTransitionTime"] == T0  # it did not


def test_no_report_yet_is_unknown_and_a_workspace_without_adapters_has_no_such_condition(adapters_ws, inference_ws):
    ws = adapters_ws["metadata"]["name"]
    reply, _ = sync_with_pods(adapters_ws, [pod(f"{ws}-a", ws, containers=[running("serve")])])
    c = conds(reply)["AdaptersReady"]
    assert (c["status"], c["reason"]) == ("Unknown", "AdapterStatusUnknown")
    plain, _ = sync_with_pods(inference_ws, [reporting("p", inference_ws["metadata"]["name"], "True")])
    assert "AdaptersReady" not in conds(plain)


def test_serving_pods_run_as_the_workspace_account_bound_to_the_pod_status_role(adapters_ws):
    ws = adapters_ws["metadata"]["name"]
    _, desired = sync_with_pods(adapters_ws, [])
    by_kind = {c["kind"]: c for c in desired}
    sa, rb, dep = by_kind["ServiceAccount"], by_kind["RoleBinding"], by_kind["Deployment"]
    assert sa["metadata"]["name"] == f"{ws}-runtime" and sa["automountServiceAccountToken"] is False
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                             "name": RUNTIME_CLUSTER_ROLE}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": f"{ws}-runtime",
                               "namespace": adapters_ws["metadata"].get("namespace", NS)}]
    spec = dep["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{ws}-runtime" and spec["automountServiceAccountToken"] is True
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env[POD_NAME_ENV]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env[POD_NAMESPACE_ENV]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    for child in (sa, rb, dep):
        for version in ("1.30", "1.37"):
            kubernetes_validate.validate(child, version, strict=True)
