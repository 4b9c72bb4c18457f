"""Live adapters on a real local Ray: a Serve config change reaches the running replica through user_config
and reconfigure(), never as new replicas; a tag follows its newest digest; a failed fetch keeps the old set.

The replica is identified by its OS process (Ray titles it `ray::ServeReplica:<app>:ModelServer`): the
same pid before and after a change means nothing was redeployed. A real docker-registry holds the adapters.
"""
import time
from pathlib import Path

import httpx
import pytest

import artifacts
from tests.support.registry import RecordingProxy, registry_fixture
from tests.support.replicas import replica_pids
from tests.support.request_loop import PROMPT, RequestLoop

pytestmark = pytest.mark.slow
NAME = "tiny-live"
APP = "live"
registry = registry_fixture()


def serve_config(model: Path, adapters: list[dict], **args) -> dict:
    return {"applications": [{"name": APP, "route_prefix": "/", "import_path": "serving.app:build",
                              "args": {"model": str(model), "served_model_name": NAME, "max_batch_size": 8,
                                       "adapters": adapters, **args}}]}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tinymodel import build_adapter, build_tiny_model

    root = tmp_path_factory.mktemp("live-models")
    base = build_tiny_model(root / "base", architecture="llama")
    return base, {seed: build_adapter(base, root / f"adapter-{seed}", seed=seed) for seed in (1, 2, 3)}


@pytest.fixture(scope="module")
def proxy(registry):
    """A second address of the registry, one a test can take away (listed as insecure before Ray starts)."""
    with RecordingProxy(registry.host) as p:
        yield p


@pytest.fixture(scope="module")
def server(port, models, registry, proxy, tmp_path_factory):
    import os

    from serving import ray_local

    os.environ["KAITO_CACHE_DIR"] = str(tmp_path_factory.mktemp("live-cache"))  # the replica inherits it
    ray_local.start(port=port, num_cpus=2, quiet=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        ray_local.stop()


def models_listed(client) -> dict[str, dict]:
    return {m["id"]: m for m in client.get("/v1/models").json()["data"]}


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def complete(client, model: str) -> str:
    r = client.post("/v1/completions", json={"model": model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0,
                                             "ignore_eos": True})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def test_an_adapter_edit_is_applied_by_reconfigure_on_the_same_replica(server, models):
    from serving.deploy import deploy

    base, adapters = models
    deploy(serve_config(base, [{"name": "one", "source": str(adapters[1])}]))
    wait_for(lambda: server.get("/healthz").status_code == 200, 120, "the model to load")
    assert list(models_listed(server)) == [NAME, "one"]
    before = replica_pids(APP)
    assert len(before) == 1, before
    one = complete(server, "one")

    started = time.monotonic()
    deploy(serve_config(base, [{"name": "two", "source": str(adapters[2]), "strength": 0.5}]))
    wait_for(lambda: list(models_listed(server)) == [NAME, "two"], 10, "the new adapter set")
    two = complete(server, "two")
    first_answer_s = time.monotonic() - started
    assert two != one and first_answer_s <= 5, first_answer_s
    assert server.post("/v1/completions", json={"model": "one", "prompt": "x"}).status_code == 404
    assert replica_pids(APP) == before, "an adapter change must not start new replicas"

    # a key that needs new replicas does: Serve rebuilds the application (for contrast)
    deploy(serve_config(base, [{"name": "two", "source": str(adapters[2]), "strength": 0.5}], max_batch_size=4))
    wait_for(lambda: replica_pids(APP) and replica_pids(APP) != before, 60, "a new replica")


def configmap_volume(root: Path, config: dict, version: int) -> Path:
    """Write the Serve config the way the kubelet updates a ConfigMap volume: a new timestamped directory,
    then an atomic swap of the `..data` symlink; the mounted file is a symlink through `..data`."""
    import os

    import yaml

    data = root / f"..2026_12_01_22_00_{version:02d}"
    data.mkdir()
    (data / "serve_config.yaml").write_text(yaml.safe_dump(config))
    os.symlink(data.name, root / "..data_tmp")
    os.replace(root / "..data_tmp", root / "..data")
    mounted = root / "serve_config.yaml"
    if not mounted.is_symlink():
        os.symlink("..data/serve_config.yaml", mounted)
    return mounted


def test_the_head_applies_a_configmap_update_live_and_leaves_restart_keys_alone(server, models, tmp_path, caplog):
    import logging
    import threading

    from serving.cluster import load_config, watch_config
    from serving.deploy import deploy

    base, adapters = models
    mounted = configmap_volume(tmp_path, serve_config(base, [{"name": "one", "source": str(adapters[1])}]), 1)
    cfg = load_config(str(mounted))
    deploy(cfg)
    wait_for(lambda: server.get("/healthz").status_code == 200 and list(models_listed(server)) == [NAME, "one"],
             120, "the first set")
    pids = replica_pids(APP)
    stop = threading.Event()
    watch_config(str(mounted), cfg, stop)
    try:
        started = time.monotonic()
        configmap_volume(tmp_path, serve_config(base, [{"name": "one", "source": str(adapters[1])},
                                                       {"name": "three", "source": str(adapters[3])}]), 2)
        wait_for(lambda: list(models_listed(server)) == [NAME, "one", "three"], 10, "the added adapter")
        complete(server, "three")
        assert time.monotonic() - started <= 5
        with caplog.at_level(logging.WARNING, logger="serving.reload"):
            configmap_volume(tmp_path, serve_config(base, [], max_batch_size=2), 3)
            wait_for(lambda: any("not applied live" in r.getMessage() for r in caplog.records), 10, "the warning")
        [warning] = [r.getMessage() for r in caplog.records if "not applied live" in r.getMessage()]
        assert "applications[live].args.max_batch_size need new replicas" in warning, warning
        time.sleep(1.5)
        assert list(models_listed(server)) == [NAME, "one", "three"]  # nothing of that version applied
        assert replica_pids(APP) == pids
    finally:
        stop.set()


def test_a_new_digest_under_the_tag_is_served_live_and_no_request_fails(server, models, registry):
    from serving.deploy import deploy

    base, adapters = models
    tag = registry.ref("adapters/live", "latest")
    first = artifacts.push(adapters[1], tag)
    deploy(serve_config(base, [{"name": "tagged", "source": tag}], adapter_resolve_interval_s=1))
    wait_for(lambda: server.get("/healthz").status_code == 200 and "tagged" in models_listed(server), 120,
             "the tagged adapter")
    assert models_listed(server)["tagged"]["digest"] == first
    pids = replica_pids(APP)
    old = complete(server, "tagged")
    with RequestLoop(str(server.base_url), "tagged") as loop:
        time.sleep(0.5)
        second = artifacts.push(adapters[3], tag)  # a new tuning run pushed under the same tag
        assert second != first
        wait_for(lambda: models_listed(server)["tagged"]["digest"] == second, 15, "the new digest")
        new = complete(server, "tagged")
        time.sleep(0.5)
    assert new != old
    assert loop.failures == [] and loop.answers, loop.failures[:3]
    # a request running across the swap switches at a step boundary: its text may mix both versions
    assert loop.answers[0] == old and loop.answers[-1] == new, (old, new, loop.answers[0], loop.answers[-1])
    assert replica_pids(APP) == pids


def test_a_failed_fetch_keeps_the_old_version_serving_and_says_why(server, models, registry):
    from serving.deploy import deploy

    base, adapters = models
    tag = registry.ref("adapters/flaky", "v1")
    good = artifacts.push(adapters[1], tag)
    deploy(serve_config(base, [{"name": "flaky", "source": tag}], adapter_resolve_interval_s=1))
    wait_for(lambda: server.get("/healthz").status_code == 200 and "flaky" in models_listed(server), 120,
             "the adapter")
    before = complete(server, "flaky")
    # the next push under the tag lands with a broken blob: the new digest resolves, its fetch cannot verify
    bad = artifacts.push(adapters[2], tag)
    manifest = httpx.get(f"{registry.url}/v2/adapters/flaky/manifests/{bad}",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    for layer in manifest["layers"]:
        blob = registry.blob_path(layer["digest"])
        blob.write_bytes(b"not the adapter" + blob.read_bytes()[15:])
    card = wait_for(lambda: (m := models_listed(server)["flaky"]).get("available") is False and m, 20,
                    "the failure to show")
    assert card["digest"] == good and card["reason"], card
    assert complete(server, "flaky") == before  # the old version still answers


def test_an_unreachable_registry_keeps_the_served_digest_and_shows_why(server, models, proxy):
    from serving.deploy import deploy

    base, adapters = models
    tag = proxy.ref("adapters/proxied", "v1")
    digest = artifacts.push(adapters[1], tag)
    deploy(serve_config(base, [{"name": "proxied", "source": tag}], adapter_resolve_interval_s=1))
    wait_for(lambda: server.get("/healthz").status_code == 200 and "proxied" in models_listed(server), 120,
             "the adapter")
    before = complete(server, "proxied")
    proxy.__exit__(None, None, None)  # the registry is gone from this address
    card = wait_for(lambda: (m := models_listed(server)["proxied"]).get("available") is False and m, 20,
                    "the failure to show")
    assert card["digest"] == digest and "cannot re-resolve" in card["reason"] and digest in card["reason"], card
    assert complete(server, "proxied") == before
    failures = [ln for ln in server.get("/metrics").text.splitlines()
                if ln.startswith("kaito_adapter_resolve_failures_total ")]
    assert failures and float(failures[0].split()[1]) >= 1, failures
