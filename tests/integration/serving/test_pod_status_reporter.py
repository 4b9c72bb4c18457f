"""The runtime's pod condition against a stand-in kube-apiserver (tests/support/apiserver.py: the one part
that cannot run here; it follows the API's documented path, verbs, media types, bearer auth, TLS and the
strategic merge of conditions by type). The reporter is the real one, over real HTTPS on 127.0.0.1."""
from __future__ import annotations

import logging
import time

import pytest

from contract.podstatus import ADAPTERS_CONDITION
from serving import podcondition
from contract.podstatus import pod_condition
from serving.podcondition import PodStatusReporter, in_cluster
from tests.support.apiserver import ApiServer

NS, POD = "team-a", "ws-7d9f-abcde"


@pytest.fixture
def api(tmp_path):
    with ApiServer(tmp_path / "api") as a:
        a.add_pod(NS, POD, labels={"kaito.sh/workspace": "ws"})
        yield a


def reporter(api, sa, **kw) -> PodStatusReporter:
    target = in_cluster(api.environ(sa, NS, POD))
    assert target is not None
    return PodStatusReporter(target, backoff_s=kw.pop("backoff_s", (0.05,)), **kw)


def wait_for(predicate, timeout=10.0, what="it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_condition_is_patched_on_change_only_and_other_conditions_stay(api, tmp_path):
    sa = api.service_account(tmp_path / "sa", NS)
    r = reporter(api, sa)
    try:
        r.update({})
        wait_for(lambda: r.patches == 1, what="the first patch")
        pod = api.pod(NS, POD)
        assert [c["type"] for c in pod["status"]["conditions"]] == ["Ready", ADAPTERS_CONDITION]
        first = pod_condition(pod)
        assert first["status"] == "True"
        r.update({})  # nothing changed: no second patch
        r.update({"fr": "cannot fetch adapter 'fr' from oci://r/fr:2: digest mismatch"})
        wait_for(lambda: r.patches == 2, what="the failure")
        failed = pod_condition(api.pod(NS, POD))
        assert failed["status"] == "False" and failed["reason"] == "AdapterUnavailable"
        assert failed["message"] == "adapter fr is unavailable: cannot fetch adapter 'fr' from oci://r/fr:2: digest mismatch"
        assert api.pod(NS, POD)["status"]["conditions"][0]["type"] == "Ready"  # merged by type, not replaced
        time.sleep(0.3)
        assert r.patches == 2
    finally:
        r.close()
    # what went over the wire is the documented call
    [get] = [c for c in api.calls if c.method == "GET"]
    assert get.path == f"/api/v1/namespaces/{NS}/pods/{POD}/status" and get.authorized
    patches = api.patches()
    assert len(patches) == 2 and all(c.content_type == "application/strategic-merge-patch+json" and c.authorized
                                     and c.path == get.path for c in patches)
    assert patches[0].body == {"status": {"conditions": [first]}}


def test_a_restarted_runtime_reads_the_pod_first_and_keeps_the_transition_time(api, tmp_path):
    sa = api.service_account(tmp_path / "sa", NS)
    old = podcondition.condition({"fr": "why"}, None, "2026-12-01T09:00:00Z")
    api.pods[(NS, POD)]["status"]["conditions"].append(old)
    r = reporter(api, sa)
    try:
        r.update({"fr": "why"})
        wait_for(lambda: any(c.method == "GET" for c in api.calls), what="the read")
        time.sleep(0.3)
        assert api.patches() == [] and r.patches == 0  # already so on the pod
        r.update({"fr": "why", "de": "HTTP 404"})
        wait_for(lambda: r.patches == 1, what="the patch")
        assert pod_condition(api.pod(NS, POD))["lastTransitionTime"] == "2026-12-01T09:00:00Z"  # still False since then
    finally:
        r.close()


def test_server_errors_are_retried_with_backoff_and_the_latest_state_wins(api, tmp_path, caplog):
    sa = api.service_account(tmp_path / "sa", NS)
    api.fail_next.extend([503, 500])
    r = reporter(api, sa, backoff_s=(0.2, 0.4))
    try:
        with caplog.at_level(logging.WARNING, logger="serving.podcondition"):
            r.update({"a": "one"})
            r.update({"b": "two"})
            wait_for(lambda: r.patches == 1, what="the retried patch")
    finally:
        r.close()
    assert pod_condition(api.pod(NS, POD))["message"] == "adapter b is unavailable: two"
    warnings = [rec.getMessage() for rec in caplog.records]
    assert len(warnings) == 2 and "HTTP 503" in warnings[0] and "HTTP 500" in warnings[1], warnings


def test_a_refused_token_is_logged_without_the_token_and_a_rotated_one_is_picked_up(api, tmp_path, caplog):
    sa = api.service_account(tmp_path / "sa", NS, verbs=("get",))  # bound to a role without patch
    token = (sa / "token").read_text()
    r = reporter(api, sa, backoff_s=(0.1,))
    try:
        with caplog.at_level(logging.WARNING, logger="serving.podcondition"):
            r.update({})
            wait_for(lambda: any(c.code == 403 for c in api.calls), what="the refusal")
            api.service_account(sa, NS, token="rotated-token-with-patch")  # the kubelet rotates the file
            wait_for(lambda: r.patches == 1, what="the patch with the new token")
    finally:
        r.close()
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "HTTP 403" in text and "cannot patch resource" in text
    assert token not in text and "rotated-token-with-patch" not in text


def test_an_api_server_the_ca_does_not_vouch_for_is_refused(api, tmp_path, caplog):
    sa = api.service_account(tmp_path / "sa", NS)
    with ApiServer(tmp_path / "other") as other:  # another cluster's CA
        (sa / "ca.crt").write_bytes(other.ca_pem)
    r = reporter(api, sa, backoff_s=(0.1,))
    try:
        with caplog.at_level(logging.WARNING, logger="serving.podcondition"):
            r.update({})
            wait_for(lambda: caplog.records, what="the TLS failure")
    finally:
        r.close()
    assert api.calls == [] and "CERTIFICATE_VERIFY_FAILED" in caplog.records[0].getMessage()
