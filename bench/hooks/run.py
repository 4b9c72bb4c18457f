"""Hook-server benchmark: workspace syncs/s and latency with wrk against gunicorn (2 workers) on
loopback, and NodeProvisioner sync time at 1,000 and 10,000 workspaces (in-process and over HTTP).

    .venv/bin/python bench/hooks/run.py [--duration 10] [--connections 16]

Prints a table and writes bench/results/hooks.json. Targets: >= 1,000 workspace syncs/s with
p99 <= 10 ms; NodeProvisioner <= 100 ms at 1,000 workspaces and <= 1 s at 10,000.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hooks.core import sync_workspace  # noqa: E402
from hooks.tools.emulated import inprocess_transport, make_world  # noqa: E402
from hooks.core.routes import BY_PATH, answer  # noqa: E402
from hooks.core.settings import CLAIM_APIS, Settings  # noqa: E402
from metacontroller.api import build_object_map  # noqa: E402

SETTINGS = Settings(claim_api=CLAIM_APIS["nodeclaim"])
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.body = f:read("*a")
f:close()
"""


def workspace_sync_body() -> bytes:
    """A converged workspace with 2 adapters plus its observed children, as Metacontroller sends it."""
    import yaml
    clock = lambda: "2026-01-01T00:00:00Z"  # noqa: E731
    world = make_world(SETTINGS, transport=inprocess_transport(SETTINGS, clock), clock=clock)
    ws = yaml.safe_load((ROOT / "examples/inference/kaito_workspace_phi_3_with_adapters.yaml").read_text())
    ws["metadata"]["namespace"] = "default"
    # the seed's placeholder image is refused at admission; a user fills in a real reference
    ws["inference"]["adapters"][0]["source"]["image"] = "myregistry.azurecr.io/adapters/phi-3-adapter:0.0.1"
    ws["inference"]["adapters"].append({"source": {"name": "second", "image": "registry.example.com/ad/second:1",
                                                   "imagePullSecrets": ["pull"]}, "strength": "0.5"})
    world.cluster.create(ws)
    name = ws["metadata"]["name"]
    world.run_until(lambda: any(c["type"] == "WorkspaceReady" and c["status"] == "True" for c in
                                (world.get("kaito.sh/v1alpha1", "Workspace", name, "default").get("status") or {})
                                .get("conditions") or []))
    ctl = world.controllers[1]
    parent = world.get("kaito.sh/v1alpha1", "Workspace", name, "default")
    body = {"controller": ctl.controller, "parent": parent,
            "children": build_object_map([("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap"),
                                          ("batch/v1", "Job")], ctl.observed_children(parent)),
            "related": build_object_map([("v1", "Node"), ("karpenter.sh/v1", "NodeClaim")],
                                        world.cluster.list("v1", "Node") + world.cluster.list("karpenter.sh/v1", "NodeClaim")),
            "finalizing": False}
    return json.dumps(body).encode()


def nodeprovisioner_body(n: int) -> dict:
    wss, nodes = {}, {}
    for i in range(n):
        ns, name = f"team-{i % 100}", f"ws-{i}"
        wss[f"{ns}/{name}"] = {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace",
                               "metadata": {"name": name, "namespace": ns, "uid": f"u{i}", "generation": 1},
                               "resource": {"count": 1 + i % 2, "instanceType": "Standard_NC12s_v3",
                                            "labelSelector": {"matchLabels": {"apps": name}}},
                               "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}}}
        if i % 4 == 0:  # a quarter of them already have a labelled node
            nodes[f"byo-{i}"] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"byo-{i}", "labels": {
                "apps": name, "node.kubernetes.io/instance-type": "Standard_NC12s_v3"}},
                "status": {"allocatable": {"nvidia.com/gpu": "2"}, "conditions": [{"type": "Ready", "status": "True"}]}}
    return {"controller": {}, "parent": {"apiVersion": "kaito.sh/v1alpha1", "kind": "NodeProvisioner",
                                         "metadata": {"name": "default", "generation": 1}, "spec": {}},
            "children": {"NodeClaim.karpenter.sh/v1": {}},
            "related": {"Workspace.kaito.sh/v1alpha1": wss, "Node.v1": nodes}, "finalizing": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(port: int, worker_class: str = "sync") -> subprocess.Popen:
    env = {**os.environ, "KAITO_CLAIM_API": "nodeclaim",
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="kaito-bench-metrics-")}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:hooks.shell.gunicorn_conf", "-w", "2",
                             "-k", worker_class, *(["--threads", "4"] if worker_class == "gthread" else []),
                             "-b", f"127.0.0.1:{port}", "hooks.shell.app:app"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gunicorn did not start")


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def run_wrk(url: str, body_file: str, duration: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA)
        script = f.name
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, url],
                         capture_output=True, text=True, env={**os.environ, "BODY_FILE": body_file}, check=True).stdout
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"requests_per_s": rps, "p50_ms": pct["50"], "p90_ms": pct["90"], "p99_ms": pct["99"],
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else ""}


def run_wrk_get(url: str, duration: int, connections: int) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M)}
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),
            "p50_ms": pct["50"], "p90_ms": pct["90"], "p99_ms": pct["99"]}


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _without_gc(fn, *args):
    gc.disable()
    try:
        return fn(*args)
    finally:
        gc.enable()


def post(url: str, data: bytes) -> bytes:
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200
        return r.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", default="4,16",
                        help="comma list of wrk connection counts (Metacontroller's default --workers is 5)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "hooks.json"))
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    body = workspace_sync_body()
    body_file = tempfile.NamedTemporaryFile(suffix=".json", delete=False)
    body_file.write(body)
    body_file.close()
    decoded = json.loads(body)
    in_process = median_time(lambda: json.dumps(sync_workspace.sync(json.loads(body), SETTINGS, "t")), 200)

    np_rows = []
    port = free_port()
    proc = start_gunicorn(port)
    try:
        base = f"http://127.0.0.1:{port}"
        post(base + "/workspace/sync", body)  # warm both code paths once
        conns = [int(c) for c in args.connections.split(",")]
        wrks = {c: run_wrk(base + "/workspace/sync", body_file.name, args.duration, c) for c in conns}
        # Floor of the stack (gunicorn + Flask, no body, no work) under the same conditions.
        floor = run_wrk_get(base + "/healthz", args.duration, conns[0])
        for n in (1000, 10000):
            req = nodeprovisioner_body(n)
            raw = json.dumps(req).encode()
            # decode + sync + encode without HTTP, with GC paused as hooks.shell.app runs it
            pure = median_time(lambda: _without_gc(answer, BY_PATH["/nodeprovisioner/sync"], raw, SETTINGS, "t"), 5)
            http = median_time(lambda: post(base + "/nodeprovisioner/sync", raw), 5)
            reply = json.loads(post(base + "/nodeprovisioner/sync", raw))
            np_rows.append({"workspaces": n, "claims": len(reply["children"]), "request_mb": round(len(raw) / 1e6, 2),
                            "pure_ms": round(pure * 1000, 1), "http_ms": round(http * 1000, 1)})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.unlink(body_file.name)

    result = {
        "machine": f"{os.cpu_count()} cores", "gunicorn_workers": 2, "load_avg_1m": os.getloadavg()[0],
        "wrk_duration_s": args.duration, "payload_bytes": len(body),
        "payload": f"workspace with {len(decoded['parent']['inference']['adapters'])} adapters, "
                   f"{sum(len(v) for v in decoded['children'].values())} observed children",
        "workspace_sync_http": {f"c{c}": w for c, w in wrks.items()},
        "workspace_sync_in_process_ms": round(in_process * 1000, 3),
        "healthz_floor_http": {f"c{conns[0]}": floor},
        "nodeprovisioner_sync": np_rows,
        "targets": {"workspace_syncs_per_s": 1000, "workspace_p99_ms": 10, "nodeprovisioner_1000_ms": 100,
                    "nodeprovisioner_10000_ms": 1000},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print(f"Workspace sync ({result['payload']}, {len(body)} B), gunicorn -w 2 (sync workers), "
          f"load average {result['load_avg_1m']:.1f}:")
    print(f"  {'path':<26}{'syncs/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'target':>22}")
    for c, wrk in wrks.items():
        print(f"  {f'HTTP (wrk -c{c})':<26}{wrk['requests_per_s']:>10.0f}{wrk['p50_ms']:>9.2f}{wrk['p90_ms']:>9.2f}"
              f"{wrk['p99_ms']:>9.2f}{'>=1000/s, p99<=10ms':>22}")
    print(f"  {f'GET /healthz (c{conns[0]}, floor)':<26}{floor['requests_per_s']:>10.0f}{floor['p50_ms']:>9.2f}"
          f"{floor['p90_ms']:>9.2f}{floor['p99_ms']:>9.2f}"
          f"   sync/floor = {wrks[conns[0]]['requests_per_s'] / floor['requests_per_s']:.2f}")
    per_core = 1000 / result["workspace_sync_in_process_ms"]
    best = max(w["requests_per_s"] for w in wrks.values())
    print(f"  {'pure core, 1 core':<26}{per_core:>10.0f}{result['workspace_sync_in_process_ms']:>9.3f}"
          f"   best HTTP / pure-per-core = {best / per_core:.2f}")
    print("NodeProvisioner sync:")
    print(f"  {'workspaces':>10}{'claims':>8}{'body MB':>9}{'pure ms':>9}{'HTTP ms':>9}{'target ms':>11}{'HTTP/pure':>11}")
    for row in np_rows:
        target = 100 if row["workspaces"] == 1000 else 1000
        print(f"  {row['workspaces']:>10}{row['claims']:>8}{row['request_mb']:>9}{row['pure_ms']:>9}{row['http_ms']:>9}"
              f"{target:>11}{row['http_ms'] / row['pure_ms']:>11.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
