import json

import pytest
from pydantic import ValidationError

from metacontroller.api import (MAX_NESTING, SYNC_RESPONSE_KEYS, CustomizeResponse, RequestError, SyncRequest,
                                SyncResponse, build_object_map, decode, encode_reply, group_key,
                                object_key)
from metacontroller.apply import LAST_APPLIED


def test_v2_map_keys():
    assert group_key("apps/v1", "Deployment") == "Deployment.apps/v1"
    assert object_key({"metadata": {"name": "a", "namespace": "ns"}}) == "ns/a"
    assert object_key({"metadata": {"name": "node-1"}}) == "node-1"
    m = build_object_map([("v1", "Service"), ("apps/v1", "Deployment")],
                         [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"}}])
    assert m == {"Service.v1": {"n/s": m["Service.v1"]["n/s"]}, "Deployment.apps/v1": {}}


def test_strict_reply_rejects_unknown_keys():
    with pytest.raises(ValidationError):
        SyncResponse.model_validate_json(b'{"status": {}, "children": [], "extra": 1}')
    with pytest.raises(ValidationError):
        CustomizeResponse.model_validate_json(b'{"relatedResources": [{"apiVersion": "v1", "resource": "nodes", "x": 1}]}')


def test_wire_form_has_only_allowed_keys():
    wire = SyncResponse(status={"a": 1}, children=[None, {"kind": "X"}], resyncAfterSeconds=5).to_wire()
    assert set(wire) <= SYNC_RESPONSE_KEYS and wire["children"] == [{"kind": "X"}]


def _sync_body(**over):
    body = {"controller": {}, "parent": {"apiVersion": "x/v1", "kind": "P", "metadata": {"name": "p", "namespace": "n"}},
            "children": {"ConfigMap.v1": {"n/c": {"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"name": "c", "namespace": "n"}}}},
            "related": {}}
    body.update(over)
    return json.dumps(body).encode()


def test_decode_types_the_request_and_keeps_the_wire_form():
    req = decode(SyncRequest, _sync_body())
    child = req.children["ConfigMap.v1"]["n/c"]
    assert child.metadata.name == "c" and child.key == "n/c"
    assert req.pairs("children", "ConfigMap.v1") == [
        (child, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}})]
    assert req.raw["related"] == {}


@pytest.mark.parametrize("body, status, path", [
    (b"{", 400, "not valid JSON"),
    (b"[" * 20_000 + b"]" * 20_000, 400, "nests deeper"),
    (b'{"a": NaN}', 400, "not valid JSON"),
    (b"[1]", 422, "body: must be a JSON object"),
    (_sync_body(related=None), 422, "related: Input should be a valid dictionary"),
    (_sync_body(related={"Node.v1": None}), 422, "related['Node.v1']: Input should be a valid dictionary"),
    (_sync_body(parent={"apiVersion": "x/v1", "kind": "P", "metadata": {"name": 7}}), 422, "parent.metadata.name"),
    (_sync_body(parent={"apiVersion": "x/v1", "kind": "P", "metadata": {"name": "p"}, "status": "broken"}), 422,
     "parent.status"),
    (_sync_body(children={"ConfigMap.v1": {"n/other": {"apiVersion": "v1", "kind": "ConfigMap",
                                                       "metadata": {"name": "c", "namespace": "n"}}}}), 422,
     "children['ConfigMap.v1']['n/other']: key must be the object's v2 key 'n/c'"),
    (_sync_body(children={"Secret.v1": {"n/c": {"apiVersion": "v1", "kind": "ConfigMap",
                                                "metadata": {"name": "c", "namespace": "n"}}}}), 422,
     "a ConfigMap.v1 under group 'Secret.v1'"),
    (_sync_body(children={"ConfigMap.v1": {"n/c": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "c", "namespace": "n", "annotations": {LAST_APPLIED: "{not json"}}}}}), 422, LAST_APPLIED),
    (json.dumps({"parent": {"apiVersion": "v1", "kind": "P", "metadata": {"name": "a\udfff"}}, "related": {}}).encode(),
     400, "lone leading surrogate"),
    (_sync_body(parent={"apiVersion": "v", "kind": "P", "metadata": {"name": "p"}, "x": [[[[1]]]]}, related=[]), 422,
     "related"),
])
def test_decode_refuses_what_is_not_v2_and_names_the_path(body, status, path):
    with pytest.raises(RequestError) as exc:
        decode(SyncRequest, body)
    assert exc.value.status == status and path in str(exc.value)


def test_a_number_beyond_json_range_is_never_sent_on():
    with pytest.raises(RequestError, match="beyond JSON's range") as exc:
        encode_reply({"children": [decode(SyncRequest, _sync_body()).raw, {"x": float("inf")}]})
    assert exc.value.status == 422


def _nested(depth: int) -> dict:
    deep: dict = {}
    for _ in range(depth - 1):
        deep = {"x": deep}
    return deep


def test_nesting_limit_is_the_documented_one():
    assert decode(SyncRequest, _sync_body(controller=_nested(MAX_NESTING - 10))).controller
    with pytest.raises(RequestError, match=f"deeper than {MAX_NESTING}") as exc:
        decode(SyncRequest, _sync_body(controller=_nested(MAX_NESTING + 10)))
    assert exc.value.status == 400
