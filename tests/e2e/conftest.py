"""The container tier: our images built with podman, the pods the hooks emit run as containers.

Images are built once per session (and cached by their inputs across runs: tests/support/images.py).
A missing podman, runc or debootstrap FAILS these tests with the install command; nothing skips.
"""
from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support import images
from tests.support.pods import PodRunner, describe
from tests.support.registry import _free_port

ROOT = Path(__file__).resolve().parents[2]
#: The images deploy/ names; the pod runner maps them to the locally built ones.
HOOKS_REF = "ghcr.io/kaito-ray/hooks:0.1.0"
RUNTIME_REF = "ghcr.io/kaito-ray/runtime:0.1.0"


def pytest_report_header(config):
    return describe()


def _require_tools() -> None:
    missing = [t for t in ("podman", "debootstrap") if shutil.which(t) is None]
    if not Path(images.RUNC).exists():
        missing.append("runc")
    assert not missing, f"missing {' '.join(missing)}: run ./dev.sh test as root, or apt-get install -y {' '.join(missing)}"


def _report(built: images.Built) -> images.Built:
    print(f"\nimage {built.info()}")
    return built


@pytest.fixture(scope="session")
def hooks_image() -> str:
    _require_tools()
    return _report(images.hooks_image()).tag


@pytest.fixture(scope="session")
def runtime_image() -> str:
    _require_tools()
    return _report(images.runtime_image()).tag


def kustomize(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize v5) is needed to render deploy/"
    out = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / "overlays" / overlay)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def wait_http(url: str, timeout: float, what: str, runner: PodRunner, container: str) -> float:
    """Seconds until `url` answers 200; the pod's output on failure."""
    def ok() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False
    return runner.wait_running(container, ok, what, timeout)


@pytest.fixture(scope="session")
def hook_pod(hooks_image, tmp_path_factory):
    """The hook Deployment's pod exactly as `kubectl kustomize deploy/overlays/nodeclaim` renders it."""
    dep = next(o for o in kustomize("nodeclaim") if o["kind"] == "Deployment" and o["metadata"]["name"] == "kaito-hooks")
    spec = dep["spec"]["template"]["spec"]
    port = _free_port()
    runner = PodRunner("kaito-hooks-e2e", spec, images={HOOKS_REF: hooks_image}, ports={8080: port},
                       workdir=tmp_path_factory.mktemp("hooks-pod"))
    start = time.monotonic()
    runner.start()
    try:
        first_200 = wait_http(f"http://127.0.0.1:{port}/healthz", 60, "the hook server's first 200 on /healthz",
                              runner, "hooks")
        print(f"\nhooks image: podman run -> first 200 on /healthz in {time.monotonic() - start:.2f}s "
              f"(after the run call returned: {first_200:.2f}s)")
        yield runner, f"http://127.0.0.1:{port}", dep
    finally:
        runner.remove()


def pytest_collection_modifyitems(session, config, items):
    """The container tier runs after every other test (.ci/run runs the whole suite in one go)."""
    here = Path(__file__).parent
    items.sort(key=lambda item: Path(str(item.fspath)).is_relative_to(here))
