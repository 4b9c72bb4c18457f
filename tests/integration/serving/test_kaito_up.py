"""`kaito up` as a user runs it: a subprocess that serves, answers, and stops cleanly on SIGTERM."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(tmp_path):
    return {**os.environ, "KAITO_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def test_kaito_up_serves_the_tiny_preset_and_stops_on_sigterm(tmp_path, port):
    proc = subprocess.Popen([sys.executable, "-m", "kaito_cli", "up", "--port", str(port)], cwd=ROOT,
                            env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    try:
        deadline = time.monotonic() + 180
        for line in proc.stdout:
            out.append(line)
            if "Ctrl-C" in line or time.monotonic() > deadline:
                break
        text = "".join(out)
        assert "Ctrl-C" in text, text
        assert f"curl -s -X POST http://127.0.0.1:{port}/chat" in text and "OpenAI(base_url=" in text
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(base + "/chat", json={"prompt": "Hello", "generate_kwargs": {"max_length": 10}}, timeout=30)
        assert r.status_code == 200 and r.json()["Result"].startswith("Hello")
        assert [m["id"] for m in httpx.get(base + "/v1/models").json()["data"]] == ["tiny"]
        ray_procs = descendants(proc.pid)
        assert ray_procs, "expected Ray processes under kaito up"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(p) for p in ray_procs):
        time.sleep(0.5)
    assert not [p for p in ray_procs if alive(p)], "Ray processes left behind"


def test_kaito_up_says_plainly_when_weights_cannot_be_fetched(tmp_path):
    ws = tmp_path / "ws.yaml"
    ws.write_text("apiVersion: kaito.sh/v1alpha1\nkind: Workspace\nmetadata: {name: w}\n"
                  "resource: {instanceType: Standard_NC12s_v3}\ninference: {preset: {name: phi-3-mini-4k-instruct}}\n")
    # a closed loopback port stands in for the hub, so this never downloads a real model anywhere
    no_hub = {**env(tmp_path), "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    r = subprocess.run([sys.executable, "-m", "kaito_cli", "up", "-f", str(ws)], cwd=ROOT, env=no_hub,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "hf://microsoft/Phi-3-mini-4k-instruct" in lines[0], r.stderr
