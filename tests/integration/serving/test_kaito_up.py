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


def env(cache: Path):
    return {**os.environ, "KAITO_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the first kaito up builds the tiny model, the second finds it."""
    return tmp_path_factory.mktemp("cache")


def tiny_is_built(cache: Path) -> bool:
    return any((cache / "models").glob("tiny-*/config.json"))


def chat(base: str, **generate_kwargs) -> httpx.Response:
    return httpx.post(base + "/chat", json={"prompt": "Hello", "generate_kwargs": generate_kwargs}, timeout=30)


def run_up(cache: Path, port: int, *flags: str, check) -> list[str]:
    """Start kaito up, hand it to `check(base)` once it prints Ctrl-C, SIGTERM it; all it printed.

    Every line that says "ready" must be true when printed: /chat answers 200 at once, no retry.
    """
    proc = subprocess.Popen([sys.executable, "-m", "kaito_cli", "up", "--port", str(port), *flags], cwd=ROOT,
                            env=env(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    out: list[str] = []
    try:
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            out.append(line.rstrip("\n"))
            if "ready" in line.lower():
                r = chat(base, max_new_tokens=2)
                assert r.status_code == 200, f"printed {line!r} while /chat answered {r.status_code}"
            if "Ctrl-C" in line or time.monotonic() > deadline:
                break
        assert any("Ctrl-C" in ln for ln in out), "\n".join(out)
        check(base)
        ray_procs = descendants(proc.pid)
        assert ray_procs, "expected Ray processes under kaito up"
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        out += rest.splitlines()
        assert proc.returncode == 0, "\n".join(out)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(p) for p in ray_procs):
        time.sleep(0.5)
    assert not [p for p in ray_procs if alive(p)], "Ray processes left behind"
    return out


def assert_clean(out: list[str]) -> None:
    text = "\n".join(out)
    for word in ("WARNING", "Warning", "warn", "Error", "error", "Traceback", "failed", "killed", "(raylet)"):
        assert word not in text, f"{word!r} in a clean start and stop:\n{text}"
    assert len(out) <= 24, f"{len(out)} lines: a clean start and stop should fit on one screen\n{text}"


def test_kaito_up_serves_the_tiny_preset_quietly_and_stops_on_sigterm(cache, port):
    def check(base):
        r = chat(base, max_length=10)
        assert r.status_code == 200 and r.json()["Result"].startswith("Hello")
        assert [m["id"] for m in httpx.get(base + "/v1/models").json()["data"]] == ["tiny"]

    built_before = tiny_is_built(cache)
    out = run_up(cache, port, check=check)
    assert_clean(out)
    assert sum("building the tiny model" in ln for ln in out) == (0 if built_before else 1), out
    ready = [ln for ln in out if ln.startswith("kaito up: ready in")]
    assert len(ready) == 1 and all(k in ready[0] for k in ("Ray", "replica start", "model")), out
    assert f"curl -s -X POST http://127.0.0.1:{port}/chat" in "\n".join(out) and "OpenAI(base_url=" in "\n".join(out)
    assert out[-1] == "kaito up: stopping...", out


def test_kaito_up_demo_adapters_are_listed_and_combined_by_strength(cache, port):
    def check(base):
        ids = [m["id"] for m in httpx.get(base + "/v1/models").json()["data"]]
        assert ids == ["tiny", "demo-alpha", "demo-beta"], ids

        def complete(model):
            r = httpx.post(base + "/v1/completions", timeout=30,
                           json={"model": model, "prompt": "Hello", "max_tokens": 8, "temperature": 0})
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["text"]

        base_text, alpha, beta = complete("tiny"), complete("demo-alpha"), complete("demo-beta")
        assert len({base_text, alpha, beta}) == 3, "each adapter must change the base model's answer"
        r = chat(base, do_sample=False, max_new_tokens=8)
        assert r.status_code == 200, r.text
        combined = r.json()["Result"][len("Hello"):]
        assert combined not in (base_text, alpha, beta), "/chat must combine both adapters, not pick one"

    built_before = tiny_is_built(cache)
    out = run_up(cache, port, "--demo-adapters", check=check)
    assert_clean(out)
    assert sum("building the tiny model" in ln for ln in out) == (0 if built_before else 1), out
    assert "(models: tiny, demo-alpha, demo-beta)" in "\n".join(out)


def test_kaito_up_says_plainly_when_weights_cannot_be_fetched(tmp_path):
    ws = tmp_path / "ws.yaml"
    ws.write_text("apiVersion: kaito.sh/v1alpha1\nkind: Workspace\nmetadata: {name: w}\n"
                  "resource: {instanceType: Standard_NC12s_v3}\ninference: {preset: {name: phi-3-mini-4k-instruct}}\n")
    # a closed loopback port stands in for the hub, so this never downloads a real model anywhere
    no_hub = {**env(tmp_path / "cache"), "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    r = subprocess.run([sys.executable, "-m", "kaito_cli", "up", "-f", str(ws)], cwd=ROOT, env=no_hub,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "hf://microsoft/Phi-3-mini-4k-instruct" in lines[0], r.stderr
