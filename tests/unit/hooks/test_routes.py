"""The one route table: served by Flask and by the in-process transport, with the same status codes."""
from __future__ import annotations

import json

import pytest

from hooks.tools import emulated as lifecycle
from hooks.shell.app import app
from hooks.core.routes import BY_PATH, ROUTES, Route, answer
from hooks.core.settings import Settings
from metacontroller.api import CustomizeRequest
from metacontroller.errors import HookCallError

T0 = "2026-01-01T00:00:00Z"


def test_flask_serves_exactly_the_route_table():
    served = {r.rule for r in app.url_map.iter_rules() if "POST" in r.methods}
    assert served == {r.path for r in ROUTES} == set(BY_PATH)


def test_internal_error_is_a_500_naming_it_never_a_200():
    def broken(request, settings, now):
        raise ZeroDivisionError("boom")

    route = Route("/x", "x", CustomizeRequest, broken)
    body = json.dumps({"parent": {"apiVersion": "v1", "kind": "P", "metadata": {"name": "p"}}}).encode()
    status, reply = answer(route, body, Settings(), T0)
    assert status == 500 and json.loads(reply) == {"error": "ZeroDivisionError: boom"}


def test_inprocess_transport_answers_like_flask(inference_ws):
    call = lifecycle.inprocess_transport(Settings(), lambda: T0)
    url = "http://kaito-hooks.kaito-system:80/workspace/sync"
    with pytest.raises(HookCallError, match="unsupported status code: 422 .*related"):
        call(url, {"parent": inference_ws}, 10)
    inference_ws["metadata"]["namespace"] = "default"
    body = {"parent": inference_ws, "children": {}, "related": {}}
    flask = app.test_client().post("/workspace/sync", json=body)
    assert flask.status_code == 200 and json.loads(call(url, body, 10))["children"] == flask.get_json()["children"]


def test_out_of_range_number_passed_through_is_a_422_not_a_500(inference_ws):
    inference_ws["metadata"]["namespace"] = "default"
    inference_ws["inference"]["preset"]["name"] = "nope"  # invalid: observed children are kept as they are
    child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
             "data": {"x": "__HUGE__"}}
    body = json.dumps({"parent": inference_ws, "related": {}, "children": {"ConfigMap.v1": {"default/c": child}}})
    status, reply = answer(BY_PATH["/workspace/sync"], body.replace('"__HUGE__"', "1e999").encode(), Settings(), T0)
    assert status == 422 and b"beyond JSON's range" in reply
