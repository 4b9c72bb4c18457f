"""For every admission rule: an object it refuses and an accepted neighbour (one edit apart).

Each case is (rule id, base example, edit for the refused object, edit for the accepted one,
edit that makes the old object for transition rules). Edits take a fresh copy and change it.
"""
from __future__ import annotations

import copy

INF = "examples/inference/kaito_workspace_phi_3.yaml"
ADP = "examples/inference/kaito_workspace_phi_3_with_adapters.yaml"
TUN = "examples/tuning/kaito_workspace_tuning_phi_3.yaml"


def _set(path: str, value):
    def edit(ws):
        node = ws
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if value is _DELETE:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = copy.deepcopy(value)
        return ws
    return edit


_DELETE = object()


def _both(*edits):
    def edit(ws):
        for e in edits:
            ws = e(ws)
        return ws
    return edit


def _adapters(n, name=lambda i: f"adapter-{i}"):
    return [{"source": {"name": name(i), "image": f"myacr.azurecr.io/adapter-{i}:0.1"}, "strength": "0.5"} for i in range(n)]


def _input_image(image):
    return _both(_set("tuning.input.urls", _DELETE), _set("tuning.input.image", image))


def _private_image(image):
    return _both(_set("inference.preset.accessMode", "private"), _set("inference.preset.presetOptions", {"image": image}))


_TUNING_PART = {
    "preset": {"name": "phi-3-mini-4k-instruct"}, "method": "lora",
    "input": {"urls": ["https://example.com/data.parquet"]},
    "output": {"image": "myacr.azurecr.io/out:1", "imagePushSecret": "push"},
}

CASES = [
    # (rule, base, refused edit, accepted edit, old edit or None)
    ("name-dns-label", INF, _set("metadata.name", "Workspace_Phi"), _set("metadata.name", "workspace-phi"), None),
    ("inference-or-tuning", INF, _set("inference", _DELETE), lambda ws: ws, None),
    ("inference-xor-tuning", INF, _set("tuning", _TUNING_PART), lambda ws: ws, None),
    ("tuning-single-node", TUN, _set("resource.count", 2), _set("resource.count", 1), None),
    ("inference-toggle", INF, _both(_set("inference", _DELETE), _set("tuning", _TUNING_PART)), lambda ws: ws, lambda ws: ws),
    ("tuning-toggle", TUN, _both(_set("tuning", _DELETE), _set("inference", {"preset": {"name": "phi-3-mini-4k-instruct"}})), lambda ws: ws, lambda ws: ws),
    ("count-immutable", INF, _set("resource.count", 2), _set("resource.count", 1), lambda ws: ws),
    ("instance-type-immutable", INF, _set("resource.instanceType", "Standard_NC12s_v3"), _set("resource.instanceType", "Standard_NC6s_v3"), lambda ws: ws),
    ("label-selector-immutable", INF, _set("resource.labelSelector.matchLabels", {"apps": "other"}), lambda ws: ws, lambda ws: ws),
    ("label-selector-in-only", INF, _set("resource.labelSelector.matchExpressions", [{"key": "gpu", "operator": "Exists"}]), _set("resource.labelSelector.matchExpressions", [{"key": "gpu", "operator": "In", "values": ["a100"]}]), None),
    ("preset-or-template", INF, _set("inference.preset", _DELETE), _both(_set("inference.preset", _DELETE), _set("inference.template", {"spec": {"containers": [{"name": "c", "image": "x"}]}})), None),
    ("preset-xor-template", INF, _set("inference.template", {"spec": {"containers": []}}), lambda ws: ws, None),
    ("template-set-unset", INF, _both(_set("inference.preset", _DELETE), _set("inference.template", {"spec": {}})), lambda ws: ws, lambda ws: ws),
    ("inference-preset-immutable", INF, _set("inference.preset.name", "phi-3-mini-128k-instruct"), _set("inference.adapters", _adapters(1)), lambda ws: ws),
    ("private-needs-image", INF, _set("inference.preset.accessMode", "private"), _both(_set("inference.preset.accessMode", "private"), _set("inference.preset.presetOptions", {"image": "myacr.azurecr.io/phi-3:1"})), None),
    ("adapters-max", INF, _set("inference.adapters", _adapters(11)), _set("inference.adapters", _adapters(10)), None),
    ("adapters-unique", INF, _set("inference.adapters", _adapters(2, name=lambda i: "same")), _set("inference.adapters", _adapters(2)), None),
    ("adapter-name-required", ADP, _set("inference.adapters.0.source.name", _DELETE), lambda ws: ws, None),
    ("adapter-name-valid", ADP, _set("inference.adapters.0.source.name", "Phi_3.adapter"), _set("inference.adapters.0.source.name", "Phi-3.Adapter-2"), None),
    ("adapter-image-or-volume", ADP, _set("inference.adapters.0.source.image", _DELETE), _both(_set("inference.adapters.0.source.image", _DELETE), _set("inference.adapters.0.source.volumeSource", {"persistentVolumeClaim": {"claimName": "adapters"}})), None),
    ("adapter-no-urls", ADP, _set("inference.adapters.0.source.urls", ["https://example.com/a.safetensors"]), lambda ws: ws, None),
    ("strength-number", ADP, _set("inference.adapters.0.strength", "strong"), _set("inference.adapters.0.strength", "0.25"), None),
    ("strength-range", ADP, _set("inference.adapters.0.strength", "1.5"), _set("inference.adapters.0.strength", "1"), None),
    ("method-lora-qlora", TUN, _set("tuning.method", "dora"), _set("tuning.method", "QLoRA"), None),
    ("tuning-preset-immutable", TUN, _set("tuning.preset.name", "phi-3-mini-128k-instruct"), lambda ws: ws, lambda ws: ws),
    ("method-immutable", TUN, _set("tuning.method", "lora"), _set("tuning.method", "QLORA"), lambda ws: ws),
    ("input-name-immutable", TUN, _set("tuning.input.name", "renamed"), lambda ws: ws, lambda ws: ws),
    ("input-image-format", TUN, _input_image("data-image"), _input_image("data-image:latest"), None),
    ("input-image-lowercase", TUN, _input_image("myacr.azurecr.io/Data:0.1"), _input_image("MyACR.azurecr.io/data:0.1"), None),
    ("output-image-format", TUN, _set("tuning.output.image", "my_acr.azurecr.io/out:1"), _set("tuning.output.image", "localhost:5000/out@sha256:" + "a" * 64), None),
    ("output-image-lowercase", TUN, _set("tuning.output.image", "Team/out:1"), _set("tuning.output.image", "team/out:V1"), None),
    ("adapter-image-format", ADP, _set("inference.adapters.0.source.image", "<YOUR_IMAGE>"), _set("inference.adapters.0.source.image", "myacr.azurecr.io/adapters/a.b_c:1"), None),
    ("adapter-image-lowercase", ADP, _set("inference.adapters.0.source.image", "ADAPTER:1"), _set("inference.adapters.0.source.image", "adapter:1"), None),
    ("preset-image-format", INF, _private_image("<YOUR IMAGE URL>"), _private_image("myacr.azurecr.io/llama-2:7b"), None),
    ("preset-image-lowercase", INF, _private_image("myacr.azurecr.io/Llama-2:7b"), _both(_private_image("myacr.azurecr.io/llama-2:7b"), _set("inference.preset.accessMode", "public")), None),
    ("input-exactly-one", TUN, _set("tuning.input.image", "myacr.azurecr.io/data:0.1"), lambda ws: ws, None),
    ("input-urls-http", TUN, _set("tuning.input.urls", ["ftp://example.com/data.parquet"]), _set("tuning.input.urls", ["http://example.com/data.parquet"]), None),
    ("input-urls-external", TUN, _set("tuning.input.urls", ["http://169.254.169.254/latest/meta-data"]), _set("tuning.input.urls", ["http://93.184.216.34/data.parquet"]), None),
    ("output-push-secret", TUN, _set("tuning.output.imagePushSecret", _DELETE), lambda ws: ws, None),
    ("output-exactly-one", TUN, _set("tuning.output.volumeSource", {"emptyDir": {}}), lambda ws: ws, None),
]
