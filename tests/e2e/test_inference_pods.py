"""An inference Workspace (tiny preset, count 2, two adapters in the local registry) run for real:
the hooks (in their container) render the children, the pod runner starts the head and worker pods
from the runtime image, and the Serve app answers through the Service port on two Ray nodes."""
from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml

import artifacts
from hooks.lifecycle import make_world
from hooks.settings import CLAIM_APIS, Settings
from serving.testing import build_adapter
from serving.tiny import build_tiny_model
from tests.e2e.conftest import ROOT, RUNTIME_REF
from tests.support.images import PODMAN, RUNC
from tests.support.pods import Objects, PodFailed, PodRunner, adapt_serve_config, ray_node_env
from tests.support.registry import _free_port, registry_fixture

registry = registry_fixture()
ADAPTERS = ("alpha", "beta")
CONFIG_KEY = "serve_config.yaml"


def _post(url: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read().decode(errors="replace")[:300]}


def _replicas_in(container: str) -> int:
    """Serve replica processes inside one container's PID namespace: where Ray placed them."""
    script = ("import glob\nn=0\nfor p in glob.glob('/proc/[0-9]*/cmdline'):\n"
              "    try: n += 'ServeReplica' in open(p,'rb').read().decode(errors='ignore')\n"
              "    except OSError: pass\nprint(n)")
    out = subprocess.run([PODMAN, "--runtime", RUNC, "exec", container, "python", "-c", script],
                         capture_output=True, text=True, timeout=30)
    return int(out.stdout.strip() or 0) if out.returncode == 0 else 0


def _alive_nodes(head: str, ray_port: int) -> int:
    script = (f"import ray; ray.init(address='127.0.0.1:{ray_port}', logging_level='ERROR');"
              "print(sum(1 for n in ray.nodes() if n['Alive']))")
    out = subprocess.run([PODMAN, "--runtime", RUNC, "exec", head, "python", "-c", script],
                         capture_output=True, text=True, timeout=60)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0


def _until(check, what: str, timeout: float, runners=()) -> float:
    print(f"waiting up to {timeout:.0f}s for {what}")
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            logs = "\n".join(f"--- {r.name}/{c['name']} ---\n{r.logs(c['name'])}" for r in runners
                             for c in r.spec["containers"])
            raise PodFailed(f"{what}: not after {timeout:.0f}s\n{logs}")
        time.sleep(1)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def adapters_pushed(registry, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    base = build_tiny_model(root / "base")  # the tiny preset's own recipe: same shapes as in the pods
    refs = {}
    for i, name in enumerate(ADAPTERS):
        artifacts.push(build_adapter(base, root / name, seed=i + 1, scale=2.0), registry.ref(f"adapters/{name}", "1"))
        refs[name] = f"{registry.host}/adapters/{name}:1"
    return refs


def test_two_node_inference_workspace_serves_both_adapters(hook_pod, runtime_image, registry, adapters_pushed,
                                                           tmp_path):
    _, base, dep = hook_pod
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    world = make_world(Settings(claim_api=CLAIM_APIS[env["KAITO_CLAIM_API"]]), base_url=base)
    ws = yaml.safe_load((ROOT / "examples" / "inference" / "kaito_workspace_tiny.yaml").read_text())
    name = ws["metadata"]["name"]
    ws["metadata"]["namespace"] = "default"
    ws["resource"]["count"] = 2
    ws["inference"]["adapters"] = [{"source": {"name": n, "image": ref}} for n, ref in adapters_pushed.items()]
    world.standins[1].hold.add(("default", name))
    world.standins[1].hold.add(("default", f"{name}-worker"))
    applied = time.monotonic()
    world.cluster.create(ws)
    world.run_until(lambda: world.get("apps/v1", "Deployment", f"{name}-worker", "default") is not None, max_rounds=10)
    head_dep = world.get("apps/v1", "Deployment", name, "default")
    worker_dep = world.get("apps/v1", "Deployment", f"{name}-worker", "default")
    svc = world.get("v1", "Service", name, "default")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    http_port, ray_port = _free_port(), _free_port()
    port_map = {ports["http"]["targetPort"]: http_port, ports["ray-gcs"]["targetPort"]: ray_port}
    config = adapt_serve_config(world.get("v1", "ConfigMap", name, "default"), CONFIG_KEY, http_port)
    common = dict(objects=Objects(config_maps={name: config}), images={RUNTIME_REF: runtime_image},
                  ports=port_map, hosts=(name,), workdir=tmp_path)
    insecure = {"KAITO_INSECURE_REGISTRIES": registry.host}
    head = PodRunner(f"{name}-head-0", copy.deepcopy(head_dep["spec"]["template"]["spec"]),
                     extra_env={**insecure, **ray_node_env(_free_port, ray_port)}, **common)
    worker = PodRunner(f"{name}-worker-0", copy.deepcopy(worker_dep["spec"]["template"]["spec"]),
                       extra_env={**insecure, **ray_node_env(_free_port)}, **common)
    runners = (head, worker)
    url = f"http://127.0.0.1:{http_port}"
    try:
        t0 = time.monotonic()
        head.start()
        t_pull = time.monotonic() - t0
        for r in runners[:1]:
            for s in r.status().get("initContainerStatuses", []):
                assert s["state"]["terminated"]["exitCode"] == 0, r.logs(s["name"])
        worker.start()
        head_c, worker_c = (r.container_name(r.spec["containers"][0]) for r in runners)
        t_join = _until(lambda: _alive_nodes(head_c, ray_port) == 2, "both Ray nodes alive", 180, runners)

        def healthy():
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        t_load = _until(healthy, f"{url}/healthz 200 (model loaded)", 300, runners)
        status, body = _post(url + "/chat", {"prompt": "Kubernetes schedules", "generate_kwargs": {"max_new_tokens": 8}})
        assert status == 200 and isinstance(body.get("Result"), str), body
        first_chat = time.monotonic() - applied
        print(f"\nWorkspace apply -> first /chat: {first_chat:.1f}s (adapter pulls {t_pull:.1f}s, "
              f"Ray join {t_join:.1f}s, model load until /healthz {t_load:.1f}s)")

        with urllib.request.urlopen(url + "/v1/models", timeout=10) as r:
            models = {m["id"] for m in json.loads(r.read())["data"]}
        assert models == {"tiny", *ADAPTERS}, models
        answers = {}
        for model in ("tiny", *ADAPTERS):
            status, body = _post(url + "/v1/chat/completions", {
                "model": model, "messages": [{"role": "user", "content": "Name a pod phase"}],
                "max_tokens": 8, "temperature": 0})
            assert status == 200 and body["model"] == model, body
            answers[model] = body["choices"][0]["message"]["content"]
        assert len(set(answers.values())) == 3, answers  # each adapter answers as its own model

        placed = {c: _replicas_in(c) for c in (head_c, worker_c)}
        print(f"Serve replica processes per container (Ray node): {placed}")
        assert placed == {head_c: 1, worker_c: 1}

        # stop the worker while requests run: bounded in count and time
        results, stop_at = [], time.monotonic() + 3
        stopper = threading.Timer(3, worker.stop_container, args=("ray-worker",))
        stopper.start()
        deadline = time.monotonic() + 120
        while len(results) < 200 and time.monotonic() < deadline:
            status, body = _post(url + "/v1/chat/completions", {
                "model": "alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                "temperature": 0}, timeout=30)
            results.append((time.monotonic() > stop_at, status, body))
            if sum(1 for after, s, _ in results[-10:] if after and s == 200) == 10 and len(results) > 20:
                break
        stopper.join()
        ok = [b for _, s, b in results if s == 200]
        assert all(b["choices"][0]["message"]["content"] == answers["alpha"] for b in ok)  # answered = correct
        failed = [(s, b) for _, s, b in results if s != 200]
        print(f"worker stopped: {len(results)} requests, {len(ok)} answered, {len(failed)} failed {failed[:3]}")
        assert [s for _, s, _ in results[-10:]] == [200] * 10, results[-10:]  # the service keeps answering
        assert _until(lambda: _alive_nodes(head_c, ray_port) == 1, "the stopped worker's node to be dead", 120, runners) >= 0

        worker.start_container("ray-worker")
        t_rejoin = _until(lambda: _alive_nodes(head_c, ray_port) == 2, "the restarted worker to rejoin", 180, runners)
        print(f"restarted worker rejoined in {t_rejoin:.1f}s")
        status, _ = _post(url + "/chat", {"prompt": "again"})
        assert status == 200
    finally:
        for r in runners:
            r.remove()
