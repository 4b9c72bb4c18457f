"""An inference Workspace (tiny preset, two adapters in the local registry) run for real: the hooks
(in their container) render the children, the pod runner starts the head pod from the runtime image
(the adapter prefetch init container, then Ray head + Serve), and the app answers through the Service port.
Two Ray nodes (count: 2) are run in tests/e2e/test_ray_cluster.py.
"""
from __future__ import annotations

import copy
import json
import time
import urllib.request

import pytest
import yaml

import artifacts
from contract.serveconfig import SERVE_CONFIG_KEY
from hooks.tools.emulated import make_world
from hooks.core.settings import CLAIM_APIS, Settings
from tests.e2e.conftest import ROOT, RUNTIME_REF
from tests.e2e.workspaces import post
from tests.support.pods import Objects, PodRunner, adapt_serve_config, ray_node_env
from tests.support.registry import _free_port, registry_fixture
from tinymodel import build_adapter, build_tiny_model

registry = registry_fixture()
ADAPTERS = ("alpha", "beta")


@pytest.fixture(scope="module")
def adapters_pushed(registry, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    base = build_tiny_model(root / "base")  # the tiny preset's own recipe: same shapes as in the pods
    refs = {}
    for i, name in enumerate(ADAPTERS):
        artifacts.push(build_adapter(base, root / name, seed=i + 1, scale=2.0), registry.ref(f"adapters/{name}", "1"))
        refs[name] = f"{registry.host}/adapters/{name}:1"
    return refs


def test_inference_workspace_serves_both_adapters_through_the_service_port(
        hook_pod, runtime_image, registry, adapters_pushed, tmp_path):
    _, base, dep = hook_pod
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    world = make_world(Settings(claim_api=CLAIM_APIS[env["KAITO_CLAIM_API"]]), base_url=base)
    ws = yaml.safe_load((ROOT / "examples" / "inference" / "kaito_workspace_tiny.yaml").read_text())
    name = ws["metadata"]["name"]
    ws["metadata"]["namespace"] = "default"
    ws["inference"]["adapters"] = [{"source": {"name": n, "image": ref}} for n, ref in adapters_pushed.items()]
    world.standins[1].hold.add(("default", name))  # only the real pod decides readiness
    applied = time.monotonic()
    world.cluster.create(ws)
    world.run_until(lambda: world.get("apps/v1", "Deployment", name, "default") is not None, max_rounds=10)
    head_dep = world.get("apps/v1", "Deployment", name, "default")
    svc = world.get("v1", "Service", name, "default")
    [http] = [p for p in svc["spec"]["ports"] if p["name"] == "http"]
    http_port, ray_port = _free_port(), _free_port()
    config = adapt_serve_config(world.get("v1", "ConfigMap", name, "default"), SERVE_CONFIG_KEY, http_port)
    head = PodRunner(f"{name}-7b5d9c-head0", copy.deepcopy(head_dep["spec"]["template"]["spec"]),
                     Objects(config_maps={name: config}), images={RUNTIME_REF: runtime_image},
                     ports={http["targetPort"]: http_port}, hosts=(name,),
                     extra_env={"KAITO_INSECURE_REGISTRIES": registry.host, **ray_node_env(_free_port, ray_port)},
                     workdir=tmp_path)
    url = f"http://127.0.0.1:{http_port}"
    try:
        t0 = time.monotonic()
        head.start()
        t_pull = time.monotonic() - t0
        inits = head.status()["initContainerStatuses"]
        assert [s["name"] for s in inits] == ["adapter-prefetch"]  # one, whatever the adapter list
        for s in inits:
            assert s["state"]["terminated"]["exitCode"] == 0, head.logs(s["name"])
        t1 = time.monotonic()
        head.wait_running("serve", lambda: "Ray runtime started" in head.logs("serve", 200), "the Ray head to start", 180)
        t_ray = time.monotonic() - t1

        def healthy():
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        t_load = head.wait_running("serve", healthy, f"{url}/healthz 200 (Serve deployed, model loaded)", 300)
        status, body = post(url + "/chat", {"prompt": "Kubernetes schedules", "generate_kwargs": {"max_new_tokens": 8}})
        assert status == 200 and isinstance(body.get("Result"), str), body
        first_chat = time.monotonic() - applied
        print(f"\nWorkspace apply -> first /chat: {first_chat:.1f}s (adapter prefetch init container {t_pull:.1f}s, "
              f"Ray head start {t_ray:.1f}s, Serve deploy + model load until /healthz {t_load:.1f}s)")

        with urllib.request.urlopen(url + "/v1/models", timeout=10) as r:
            models = {m["id"] for m in json.loads(r.read())["data"]}
        assert models == {"tiny", *ADAPTERS}, models
        answers = {}
        for model in ("tiny", *ADAPTERS):
            status, body = post(url + "/v1/chat/completions", {
                "model": model, "messages": [{"role": "user", "content": "Name a pod phase"}],
                "max_tokens": 8, "temperature": 0})
            assert status == 200 and body["model"] == model, body
            answers[model] = body["choices"][0]["message"]["content"]
        print(f"answers: {answers}")
        assert len(set(answers.values())) == 3, answers  # each adapter answers as its own model
        status, body = post(url + "/v1/chat/completions", {"model": "gamma", "messages": [{"role": "user", "content": "x"}]})
        assert status == 404 and "gamma" in json.dumps(body), body
    finally:
        head.remove()
