"""A config-file change to the first answer from the new adapter, live (Ray Serve reconfigure) against a restart.

    python bench/adapters/reload.py --runs 5

On the tiny preset, with Debian's docker-registry on 127.0.0.1 and `kaito up -f FILE` as a subprocess (the
same reload path as a cluster's head: file watch -> declarative redeploy -> user_config -> reconfigure()):

  add       FILE gains an adapter (an image in the registry; the previous run's one is removed): seconds from
            the file write to the first 200 answer naming it (goal <= 5 s)
  swap      a new digest pushed under an adapter's tag, then FILE's kaito.sh/adapter-refresh bumped: seconds
            from the file write to the first answer after /v1/models shows the new digest (goal <= 5 s)
  restart   what an adapter change costs when it restarts the server (KAITO rolls the pods): SIGTERM kaito up,
            start it again on the new FILE; seconds from the SIGTERM to the first answer from the adapter

Writes bench/results/adapters-reload.json. The machine is shared: read the medians and the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.support.registry import run_registry  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "adapters-reload.json"
POLL_S = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_workspace(path: Path, adapters: dict[str, str], refresh: str) -> None:
    doc = {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace",
           "metadata": {"name": "bench", "annotations": {"kaito.sh/adapter-refresh": refresh}},
           "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": "tiny"}}},
           "inference": {"preset": {"name": "tiny"},
                         "adapters": [{"source": {"name": n, "image": image}} for n, image in adapters.items()]}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, path)  # an editor's save, or the kubelet's symlink swap: the watcher never sees half a file


class Up:
    """`kaito up -f FILE` on a free port; `start()` returns once it printed its examples (ready)."""

    def __init__(self, ws: Path, env: dict[str, str]):
        self.ws, self.env, self.port = ws, env, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "kaito_cli", "up", "-f", str(self.ws), "--port",
                                      str(self.port), "--adapter-resolve-interval", "0"],
                                     cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            if "Ctrl-C" in line:
                return
        raise SystemExit(f"kaito up exited with {self.proc.wait()} before it was ready:\n{''.join(seen[-10:])}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def answers(client: httpx.Client, model: str) -> bool:
    try:
        r = client.post("/v1/completions", json={"model": model, "prompt": "Hello", "max_tokens": 4, "temperature": 0})
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def digest_of(client: httpx.Client, model: str) -> str | None:
    try:
        return next((m.get("digest") for m in client.get("/v1/models").json()["data"] if m["id"] == model), None)
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def until(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="live changes per scenario (default: %(default)s)")
    p.add_argument("--restarts", type=int, default=2, help="restart baselines (default: %(default)s)")
    a = p.parse_args(argv)

    import artifacts
    from tinymodel import build_adapter, ensure_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    env = {**os.environ, "KAITO_CACHE_DIR": str(work / "cache"), "PYTHONPATH": str(ROOT),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    os.environ["KAITO_CACHE_DIR"] = env["KAITO_CACHE_DIR"]
    base = ensure_tiny_model()
    dirs = [build_adapter(base, work / f"adapter-{i}", seed=i + 1) for i in range(2)]
    times: dict[str, list[float]] = {"add": [], "swap": [], "restart": []}
    with run_registry(work / "registry") as reg:
        env["KAITO_INSECURE_REGISTRIES"] = os.environ["KAITO_INSECURE_REGISTRIES"]
        swap_tag = f"{reg.host}/adapters/swap:latest"
        artifacts.push(dirs[0], "oci://" + swap_tag)
        adds = [f"{reg.host}/adapters/add-{i}:v1" for i in range(a.runs + a.restarts)]
        for i, image in enumerate(adds):
            artifacts.push(dirs[i % 2], "oci://" + image)
        ws = work / "workspace.yaml"
        write_workspace(ws, {"swap": swap_tag}, "0")
        up = Up(ws, env)
        up.start()
        try:
            with httpx.Client(base_url=up.base, timeout=30) as c:
                until(lambda: answers(c, "swap"))
                for i in range(a.runs):
                    started = time.monotonic()
                    write_workspace(ws, {"swap": swap_tag, f"add-{i}": adds[i]}, "0")
                    until(lambda: answers(c, f"add-{i}"))
                    times["add"].append(time.monotonic() - started)
                for i in range(a.runs):
                    new = artifacts.push(dirs[(i + 1) % 2], "oci://" + swap_tag)
                    started = time.monotonic()
                    write_workspace(ws, {"swap": swap_tag, f"add-{a.runs - 1}": adds[a.runs - 1]}, f"swap-{i}")
                    until(lambda: digest_of(c, "swap") == new)
                    until(lambda: answers(c, "swap"))
                    times["swap"].append(time.monotonic() - started)
            for j in range(a.restarts):
                name = f"add-{a.runs + j}"
                write_workspace(ws, {"swap": swap_tag, name: adds[a.runs + j]}, "restart")
                started = time.monotonic()
                up.stop()
                up = Up(ws, env)
                up.start()
                with httpx.Client(base_url=up.base, timeout=30) as c:
                    until(lambda: answers(c, name))
                times["restart"].append(time.monotonic() - started)
        finally:
            up.stop()

    med = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"{'scenario':<10}{'median s':>10}{'min s':>8}{'max s':>8}{'runs':>6}")
    for k, v in times.items():
        if v:
            print(f"{k:<10}{med[k]:>10.2f}{min(v):>8.2f}{max(v):>8.2f}{len(v):>6}")
    for k in ("add", "swap"):
        if k in med and "restart" in med:
            print(f"restart / {k}: {med['restart'] / med[k]:.1f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"times_s": times, "median_s": med, "runs": a.runs, "restarts": a.restarts,
                                   "machine": "shared, 2 cores"}, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
