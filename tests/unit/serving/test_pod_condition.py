"""The adapters' availability as a pod condition (serving/podcondition.py): the condition body, when the
runtime is in a pod at all, and the registry telling it every change (tiny Llama, no Ray, no network)."""
from __future__ import annotations

import json

import pytest

from contract.podstatus import ADAPTERS_CONDITION
from serving import podcondition
from serving.podcondition import condition, in_cluster, same, status_patch

T0, T1 = "2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z"


def test_unavailable_adapters_are_named_in_order_with_why():
    c = condition({"zeta": "cannot fetch adapter 'zeta' from oci://r/z:2: HTTP 404", "alpha": "digest mismatch"},
                  None, T0)
    assert c == {"type": ADAPTERS_CONDITION, "status": "False", "reason": "AdapterUnavailable",
                 "message": "adapter alpha is unavailable: digest mismatch; "
                            "adapter zeta is unavailable: cannot fetch adapter 'zeta' from oci://r/z:2: HTTP 404",
                 "lastTransitionTime": T0}
    ok = condition({}, None, T0)
    assert (ok["status"], ok["reason"]) == ("True", "AdaptersAvailable")


def test_the_transition_time_moves_only_when_the_status_changes():
    failing = condition({"a": "x"}, None, T0)
    still = condition({"a": "y", "b": "z"}, failing, T1)
    assert still["lastTransitionTime"] == T0 and still["message"] != failing["message"]
    assert not same(still, failing)  # a new message is a change worth a patch
    assert same(condition({"a": "x"}, failing, T1), failing)  # nothing new: no patch
    back = condition({}, still, T1)
    assert back["status"] == "True" and back["lastTransitionTime"] == T1


def test_long_reasons_and_many_adapters_stay_bounded_on_one_line():
    c = condition({f"a{i:02d}": "line one\nline two " + "x" * 1000 for i in range(20)}, None, T0)
    assert len(c["message"]) <= podcondition.MESSAGE_CHARS and "\n" not in c["message"]
    assert c["message"].startswith("adapter a00 is unavailable: line one line two x") and c["message"].endswith("...")


def test_the_patch_is_a_strategic_merge_of_one_condition():
    body = json.loads(status_patch(condition({}, None, T0)))
    assert body == {"status": {"conditions": [condition({}, None, T0)]}}
    assert podcondition.PATCH_CONTENT_TYPE == "application/strategic-merge-patch+json"


@pytest.fixture
def account(tmp_path):
    (tmp_path / "token").write_text("t0ken\n")
    (tmp_path / "ca.crt").write_text("not read here")
    (tmp_path / "namespace").write_text("team-a\n")
    return tmp_path


def env(account, **over):
    base = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443", "POD_NAME": "ws-7d9f-x",
            "POD_NAMESPACE": "team-a", podcondition.SERVICE_ACCOUNT_DIR_ENV: str(account)}
    return {k: v for k, v in {**base, **over}.items() if v is not None}


def test_in_a_pod_the_target_is_the_pods_own_status(account):
    t = in_cluster(env(account))
    assert t.status_url == "https://10.0.0.1:443/api/v1/namespaces/team-a/pods/ws-7d9f-x/status"
    assert t.token_file == account / "token" and t.ca_file == account / "ca.crt"
    assert in_cluster(env(account, POD_NAMESPACE=None)).namespace == "team-a"  # from the mounted account
    assert in_cluster(env(account, KUBERNETES_SERVICE_HOST="fd00::1")).server == "https://[fd00::1]:443"


@pytest.mark.parametrize("missing", ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAME", "token"])
def test_outside_a_pod_nothing_is_reported_and_nothing_fails(account, missing):
    if missing == "token":
        (account / "token").unlink()
        environ = env(account)
    else:
        environ = env(account, **{missing: None})
    assert in_cluster(environ) is None
    assert podcondition.from_environment(environ) is None


def test_laptop_defaults_have_no_service_account():
    assert podcondition.from_environment({}) is None


@pytest.fixture(scope="module")
def registry(tiny_models):
    from serving.adapters import AdapterRegistry
    from serving.service import Service

    svc = Service({"model": str(tiny_models["llama"]), "served_model_name": "base", "num_threads": 1},
                  background=False)
    seen: list[dict] = []
    reg = AdapterRegistry(svc.engine, base_name="base", on_availability=seen.append)
    yield reg, seen
    reg.shutdown()
    svc.shutdown()


def test_the_registry_reports_every_change_of_availability(registry, llama_adapters, tmp_path):
    reg, seen = registry
    apply = lambda specs: reg.submit(reg.apply, specs).result()  # noqa: E731
    apply([{"name": "alpha", "source": str(llama_adapters["alpha"])}])
    assert seen[-1] == {}
    apply([{"name": "alpha", "source": str(tmp_path / "gone")}])  # a failed fetch: the old version serves on
    assert list(seen[-1]) == ["alpha"] and "does not exist" in seen[-1]["alpha"]
    reg.mark("alpha", "cannot re-resolve r/alpha:1: HTTP 503")
    assert seen[-1] == {"alpha": "cannot re-resolve r/alpha:1: HTTP 503"}
    apply([{"name": "alpha", "source": str(llama_adapters["beta"])}])
    assert seen[-1] == {} and reg.unavailable() == {}
