"""A two-node Ray cluster from the pods the hooks emit: a tiny-preset Workspace with `count: 2` and
one adapter in the local registry. The hooks (in their container) render the head Deployment, the
worker Deployment, the Service and the Serve ConfigMap; the pod runner starts the head pod and the
worker pod from the runtime image, each with its init containers, on the host network.

Every Ray listener is on 127.0.0.1 (tests/support/pods.py, ray_node_env says how; the first test
checks it with `ss`). The worker joins the head through the Service name, which --add-host maps to
127.0.0.1, exactly as `python -m serving.cluster worker --address <ws>:6379` does in a cluster.

Placement is read from the Serve controller inside the head container (tests/support/ray_probe.py:
each replica's state and Ray node id, as `serve status` shows them, against `ray.nodes()`). Each node
has one CPU and each replica asks for one (cpus_per_replica), as each GPU node holds one replica: two
replicas can only run on two nodes.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import pytest

import artifacts
from tests.e2e.conftest import RUNTIME_REF
from tests.e2e.workspaces import apply, check_inits, example, get, head_pod, hook_world, post
from tests.support import ray_probe
from tests.support.pods import PodFailed, PodRunner, ray_node_env
from tests.support.registry import _free_port, registry_fixture
from tinymodel import build_adapter, build_tiny_model

registry = registry_fixture()
ADAPTER = "alpha"
#: Ray's own SIGTERM drain (RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S, 30 s by default) shortened so a stop
#: takes seconds: Serve stops a replica on a draining node gracefully once the deadline is within its
#: graceful_shutdown_timeout_s, when no other node can take a replacement (as here: one CPU per node).
DRAIN_SECONDS = 10
#: The worker-loss request loop: bounded in count and in time.
LOSS_CLIENTS, LOSS_MAX_REQUESTS, LOSS_MAX_SECONDS = 3, 600, 120
BURST = 8
#: A Serve replica's process name as `ss` shows it (the kernel's 15-character comm).
SERVE_REPLICA_COMM = "ray::ServeRepli"


@dataclass
class Cluster:
    head: PodRunner
    worker: PodRunner
    url: str
    timings: dict[str, float] = field(default_factory=dict)
    worker_up: bool = True   # False while the test has the worker pod deleted

    def logs(self) -> str:
        return (f"--- head (serve) ---\n{self.head.logs('serve', 80)}\n"
                f"--- worker (ray-worker) ---\n{self.worker.logs('ray-worker', 80)}")

    def view(self) -> ray_probe.ClusterView:
        proc = self.head.exec("serve", "python", "-c", ray_probe.PROBE, timeout=90)
        return ray_probe.parse(proc.stdout + proc.stderr)

    def all_healthy(self) -> bool:
        """A replica answers /healthz 200 only once its model loaded; a burst of concurrent probes
        reaches both replicas (one at a time, the proxy prefers the replica on its own node)."""
        def one(_):
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
            except OSError:
                return 0
        with ThreadPoolExecutor(BURST) as pool:
            return all(code == 200 for code in pool.map(one, range(BURST)))

    def wait(self, check: Callable[[], bool], what: str, timeout: float, interval: float = 1.0) -> float:
        """Seconds until check() holds; on the deadline, fail with what was awaited and both pods' output."""
        print(f"[cluster] waiting up to {timeout:.0f}s for {what}")
        start = time.monotonic()
        while not check():
            self.head.keep_running("serve", what)
            if self.worker_up:
                self.worker.keep_running("ray-worker", what)
            if time.monotonic() - start > timeout:
                raise PodFailed(f"not there after {timeout:.0f}s: {what}\n{self.logs()}")
            time.sleep(interval)
        return time.monotonic() - start

    def wait_view(self, want: Callable[[ray_probe.ClusterView], bool], what: str, timeout: float) -> ray_probe.ClusterView:
        seen: list[ray_probe.ClusterView] = []

        def check() -> bool:
            try:
                seen.append(self.view())
            except (ValueError, subprocess.TimeoutExpired) as exc:
                print(f"[cluster] probe: {exc}")
                return False
            return want(seen[-1])
        try:
            self.wait(check, what, timeout, interval=2.0)
        except PodFailed as exc:
            raise PodFailed(f"{exc}\nlast view: {seen[-1].describe() if seen else 'none'}") from None
        print(f"[cluster] {seen[-1].describe()}")
        return seen[-1]


@pytest.fixture(scope="module")
def adapter_ref(registry, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    base = build_tiny_model(root / "base")
    artifacts.push(build_adapter(base, root / ADAPTER, seed=3, scale=2.0), registry.ref(f"adapters/{ADAPTER}", "1"))
    return f"{registry.host}/adapters/{ADAPTER}:1"


@pytest.fixture(scope="module")
def cluster(hook_pod, runtime_image, registry, adapter_ref, tmp_path_factory):
    world = hook_world(hook_pod)
    ws = example("inference/kaito_workspace_tiny.yaml")
    name = ws["metadata"]["name"]
    ws["resource"]["count"] = 2
    ws["inference"]["adapters"] = [{"source": {"name": ADAPTER, "image": adapter_ref}}]
    applied = apply(world, ws, ("apps/v1", "Deployment", f"{name}-worker"))
    worker_dep = get(world, "apps/v1", "Deployment", f"{name}-worker")
    assert worker_dep["spec"]["replicas"] == 1, worker_dep["spec"]
    svc_ports = {p["name"]: p["targetPort"] for p in get(world, "v1", "Service", name)["spec"]["ports"]}
    assert set(svc_ports) == {"http", "ray-gcs"}, svc_ports
    http_port, ray_port = _free_port(), _free_port()
    head = head_pod(world, name, runtime_image, registry.host, tmp_path_factory.mktemp("head-pod"),
                    http_port=http_port, ray_port=ray_port)
    worker = PodRunner(f"{name}-worker-5c8f7d-w0rk1", copy.deepcopy(worker_dep["spec"]["template"]["spec"]),
                       head.objects,  # the same Serve ConfigMap: its prefetch reads the adapter list there
                       images={RUNTIME_REF: runtime_image}, hosts=(name,), ports={svc_ports["ray-gcs"]: ray_port},
                       extra_env={"KAITO_INSECURE_REGISTRIES": registry.host, **ray_node_env(_free_port),
                                  "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": str(DRAIN_SECONDS)},
                       workdir=tmp_path_factory.mktemp("worker-pod"))
    c = Cluster(head, worker, f"http://127.0.0.1:{http_port}")
    try:
        t0 = time.monotonic()
        head.start()
        c.timings["head_pulls"] = time.monotonic() - t0
        check_inits(head)
        t1 = time.monotonic()
        head.wait_running("serve", lambda: "Ray runtime started" in head.logs("serve", 200), "the Ray head to start", 180)
        c.timings["head_ray_start"] = time.monotonic() - t1
        t2 = time.monotonic()
        worker.start()
        c.timings["worker_pulls"] = time.monotonic() - t2
        check_inits(worker)
        t3 = time.monotonic()
        worker.wait_running("ray-worker", lambda: "Ray runtime started" in worker.logs("ray-worker", 200),
                            "the Ray worker to start", 180)
        c.wait_view(lambda v: sorted(v.alive.values()) == ["head", "worker"], "two live Ray nodes (head, worker)", 120)
        c.timings["worker_join"] = time.monotonic() - t3
        t4 = time.monotonic()
        c.wait_view(lambda v: v.running_on() == {"head": 1, "worker": 1},
                    "two RUNNING Serve replicas, one on each node", 300)
        c.wait(c.all_healthy, f"{BURST} concurrent {c.url}/healthz all 200 (the model loaded on both replicas)", 120)
        c.timings["replica_load"] = time.monotonic() - t4
        status, body = post(c.url + "/chat", {"prompt": "Kubernetes schedules", "generate_kwargs": {"max_new_tokens": 8}})
        assert status == 200 and isinstance(body.get("Result"), str), f"{body}\n{c.logs()}"
        c.timings["apply_to_first_chat"] = time.monotonic() - applied
        t = c.timings
        print(f"\n2 nodes: Workspace apply -> first /chat {t['apply_to_first_chat']:.1f}s: head adapter pull "
              f"{t['head_pulls']:.1f}s, Ray head start {t['head_ray_start']:.1f}s, worker adapter pull "
              f"{t['worker_pulls']:.1f}s, worker join (container start -> node alive in GCS) {t['worker_join']:.1f}s, "
              f"then until a replica RUNNING with its model loaded on each node {t['replica_load']:.1f}s")
        yield c
    finally:
        worker.remove()
        head.remove()


def _listeners(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process) of the TCP listeners these processes own, from the host's `ss -ltnp`."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True, timeout=30).stdout
    found = []
    for line in out.splitlines():
        for proc, pid in re.findall(r'\("([^"]+)",pid=(\d+)', line):
            if int(pid) in pids:
                found.append((line.split()[3], proc))
    return found


def test_two_nodes_serve_through_the_service_port_with_a_replica_on_each(cluster):
    view = cluster.view()
    assert sorted(view.alive.values()) == ["head", "worker"], view.describe()
    assert {n["ip"] for n in view.nodes if n["alive"]} == {"127.0.0.1"}, view.nodes
    nodes = {r["node"] for r in view.replicas if r["state"] == "RUNNING"}
    assert nodes == set(view.alive), view.describe()  # the two replicas on two different nodes
    print(f"placement (Serve controller, inside the head): {view.describe()}")

    with urllib.request.urlopen(cluster.url + "/v1/models", timeout=10) as r:
        models = {m["id"] for m in json.loads(r.read())["data"]}
    assert {"tiny", ADAPTER} <= models, models
    for model in ("tiny", ADAPTER):
        status, body = post(cluster.url + "/v1/chat/completions", {
            "model": model, "messages": [{"role": "user", "content": "Name a pod phase"}], "max_tokens": 8})
        assert status == 200 and body["model"] == model and body["choices"][0]["message"]["content"], body
    # Concurrent requests reach both replicas (alone, the proxy prefers the replica on its own node).
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(post(cluster.url + "/chat", {
        "prompt": "hello", "generate_kwargs": {"max_new_tokens": 4}})[0])) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert results == [200] * 6, results

    # Every listener of every process in both pods (Ray's GCS, raylets, agents, workers, the Serve
    # proxy) is on loopback, but one per replica that Ray Serve 2.60 leaves no choice about: the
    # replica's inter-deployment gRPC server binds "[::]:0" (ray/serve/_private/replica.py,
    # `_on_initialized`), with no setting to change it. Nothing here talks to it.
    listeners = _listeners(cluster.head.host_pids() | cluster.worker.host_pids())
    assert len({p for _, p in listeners} & {"gcs_server", "raylet"}) == 2, listeners
    loopback = [(a, p) for a, p in listeners if a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:"))]
    wild = [(a, p) for a, p in listeners if (a, p) not in loopback]
    replica_grpc = [(a, p) for a, p in wild if p.startswith(SERVE_REPLICA_COMM) and a.startswith(("*:", "[::]:"))]
    assert wild == replica_grpc and len(replica_grpc) == 2, f"listeners not on 127.0.0.1: {wild}"
    print(f"{len(loopback)} listeners in the two pods on 127.0.0.1 ({sorted({p for _, p in loopback})}); "
          f"not on loopback, only each Serve replica's inter-deployment gRPC server: {replica_grpc}")


def test_worker_loss_loses_no_request_and_the_worker_rejoins(cluster):
    """The worker pod is deleted (SIGTERM, then SIGKILL after the grace period) while clients keep
    sending requests; Ray drains the node on SIGTERM and Serve stops its replica gracefully, so every
    request completes. Then the worker pod starts again and a replica runs on it once more."""
    codes: list[tuple[float, int]] = []
    lock = threading.Lock()
    stop = threading.Event()
    start = time.monotonic()

    def client():
        while not stop.is_set() and time.monotonic() - start < LOSS_MAX_SECONDS:
            with lock:
                if len(codes) >= LOSS_MAX_REQUESTS:
                    return
            status, _ = post(cluster.url + "/v1/chat/completions", {
                "model": "tiny", "messages": [{"role": "user", "content": "Name a pod phase"}], "max_tokens": 4},
                timeout=60)
            with lock:
                codes.append((time.monotonic() - start, status))

    threads = [threading.Thread(target=client) for _ in range(LOSS_CLIENTS)]
    for th in threads:
        th.start()
    try:
        time.sleep(3)
        stopped_at = time.monotonic() - start
        cluster.worker_up = False
        took = cluster.worker.stop("ray-worker")
        gone_at = time.monotonic() - start
        view = cluster.wait_view(lambda v: v.running_on() == {"head": 1} and "worker" not in v.alive.values(),
                                 "the worker node gone and one replica left, on the head", 60)
        time.sleep(3)  # keep sending for a while with the worker gone
    finally:
        stop.set()
        for th in threads:
            th.join(90)
    during = [c for t, c in codes if stopped_at <= t <= gone_at]
    after = [c for t, c in codes if t > gone_at]
    failed = [(round(t, 1), c) for t, c in codes if c != 200]
    print(f"\nworker stop (SIGTERM -> exit) took {took:.1f}s; {len(codes)} requests from {LOSS_CLIENTS} clients: "
          f"{len(during)} while it stopped, {len(after)} after it was gone, failures {failed}; {view.describe()}")
    assert len(codes) < LOSS_MAX_REQUESTS or codes[-1][0] < LOSS_MAX_SECONDS  # the loop is bounded
    assert not failed, f"requests failed while the worker stopped: {failed}\n{cluster.logs()}"
    assert during and after, (len(during), len(after))

    t0 = time.monotonic()
    cluster.worker.start_container("ray-worker")
    cluster.worker_up = True
    view = cluster.wait_view(lambda v: v.running_on() == {"head": 1, "worker": 1},
                             "the restarted worker to rejoin and run a replica again", 300)
    rejoin = time.monotonic() - t0
    status, body = post(cluster.url + "/chat", {"prompt": "again", "generate_kwargs": {"max_new_tokens": 4}})
    assert status == 200, body
    print(f"worker rejoin: container start -> a RUNNING replica on the new worker node in {rejoin:.1f}s "
          f"({view.describe()})")
