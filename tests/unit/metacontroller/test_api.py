import pytest
from pydantic import ValidationError

from metacontroller.api import (SYNC_RESPONSE_KEYS, CustomizeResponse, SyncResponse, build_object_map, group_key,
                                object_key)


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
