"""A real gunicorn (2 workers) on loopback per test module, and helpers to drive it with the emulator."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from hooks.tools.emulated import make_world
from hooks.core.settings import CLAIM_APIS, Settings
from tests.integration.hooks.hooks_harness import validate_emitted

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def claim_api(request) -> str:
    return getattr(request.module, "CLAIM_API", "nodeclaim")


@pytest.fixture(scope="module")
def hook_server(claim_api):
    port = _free_port()
    metrics_dir = tempfile.mkdtemp(prefix="kaito-hooks-metrics-")
    env = {**os.environ, "KAITO_CLAIM_API": claim_api, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:hooks.shell.gunicorn_conf", "-w", "2",
         "-b", f"127.0.0.1:{port}", "hooks.shell.app:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"gunicorn did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def world_factory(hook_server, claim_api):
    """Builds emulated worlds; afterwards every child the hooks emitted passes kubernetes-validate --strict."""
    worlds = []

    def make(**kwargs):
        settings = Settings(claim_api=CLAIM_APIS[claim_api])
        world = make_world(settings, base_url=hook_server, **kwargs)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        validate_emitted(world)
