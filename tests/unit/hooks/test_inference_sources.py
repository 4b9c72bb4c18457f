"""Adapters on a user's volume and private-access weights reach the pods, as admission allows."""
import copy

import kubernetes_validate
import yaml

from hooks.tools.render import render
from tests.unit.hooks.conftest import PLACEHOLDERS, load, load_ready


def _objects(ws):
    objects, status = render(ws)
    assert not any(c["reason"] == "InvalidSpec" for c in status["conditions"]), status
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _head(objs, name):
    deployment = objs[("Deployment", name)]
    for version in ("1.30", "1.37"):
        kubernetes_validate.validate(deployment, version, strict=True)
    return deployment["spec"]["template"]["spec"]


def test_adapter_from_a_volume_is_mounted_and_an_image_adapter_is_named_in_the_serve_config():
    ws = load_ready("examples/inference/kaito_workspace_phi_3_with_adapters.yaml")
    ws["inference"]["adapters"].append(
        {"source": {"name": "from-pvc", "volumeSource": {"persistentVolumeClaim": {"claimName": "adapters"}}}, "strength": "0.5"})
    name = ws["metadata"]["name"]
    objs = _objects(ws)
    spec = _head(objs, name)
    [prefetch] = spec["initContainers"]
    assert prefetch["command"] == ["kaito", "pull", "--from-serve-config", "/mnt/config/serve_config.yaml"]
    assert {"name": "adapter-volume-from-pvc", "persistentVolumeClaim": {"claimName": "adapters"}} in spec["volumes"]
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/mnt/adapter-volumes/from-pvc"]["readOnly"] is True
    args = yaml.safe_load(objs[("ConfigMap", name)]["data"]["serve_config.yaml"])["applications"][0]["args"]
    image = PLACEHOLDERS["ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1"]
    assert args["adapters"] == [
        {"name": "phi-3-adapter", "source": f"oci://{image}", "strength": 1.0},
        {"name": "from-pvc", "source": "/mnt/adapter-volumes/from-pvc", "strength": 0.5},
    ]


def test_the_prefetch_container_and_the_serving_container_share_the_cache():
    ws = copy.deepcopy(load("examples/inference/kaito_workspace_phi_3.yaml"))
    spec = _head(_objects(ws), ws["metadata"]["name"])
    [prefetch], [serve] = spec["initContainers"], spec["containers"]
    cache = {v["name"] for v in spec["volumes"] if v.get("emptyDir") == {} and v["name"] != "tmp"}
    def cache_dir(c):
        return next(m["mountPath"] for m in c["volumeMounts"] if m["name"] in cache)
    env = lambda c: {e["name"]: e.get("value") for e in c["env"]}  # noqa: E731
    assert env(prefetch)["KAITO_CACHE_DIR"] == cache_dir(prefetch) == cache_dir(serve) == env(serve)["KAITO_CACHE_DIR"]


def test_private_access_mode_serves_the_given_image_with_its_pull_secret():
    ws = copy.deepcopy(load("examples/inference/kaito_workspace_phi_3.yaml"))
    ws["inference"]["preset"].update(accessMode="private", presetOptions={
        "image": "myacr.azurecr.io/weights/phi-3-mini:1", "imagePullSecrets": ["acr-pull"]})
    name = ws["metadata"]["name"]
    objs = _objects(ws)
    args = yaml.safe_load(objs[("ConfigMap", name)]["data"]["serve_config.yaml"])["applications"][0]["args"]
    assert args["model"] == "myacr.azurecr.io/weights/phi-3-mini:1"
    spec = _head(objs, name)
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == env["DOCKER_CONFIG"])
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "acr-pull"
    assert volume["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]


def test_public_access_mode_uses_the_pinned_hugging_face_revision():
    ws = load("examples/inference/kaito_workspace_phi_3.yaml")
    objs = _objects(ws)
    args = yaml.safe_load(objs[("ConfigMap", ws["metadata"]["name"])]["data"]["serve_config.yaml"])["applications"][0]["args"]
    assert args["model"] == "hf://microsoft/Phi-3-mini-4k-instruct@0a67737cc96d2554230f90338b163bc6380a2a85"
