"""Tune -> serve, end to end: a tuning run pushes an adapter under a tag, a running `kaito up -f` serves that
tag, a second tuning run pushes a new digest under the same tag, and a refresh bump in the Workspace file
makes the endpoint answer with the new adapter: same replica process, no failed request throughout.

Everything real: the tuning entrypoint (`python -m tuning`, the tiny preset, a few steps), Debian's
docker-registry on 127.0.0.1, and `kaito up` as a user runs it (a subprocess on an embedded Ray).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.serving.test_kaito_up import ROOT, env, run_up
from tests.support.registry import registry_fixture
from tests.support.replicas import replica_pids
from tests.support.request_loop import PROMPT, RequestLoop

pytestmark = pytest.mark.slow
registry = registry_fixture()
ADAPTER = "capitals"


def training_config(path: Path) -> Path:
    """KAITO's default LoRA template, in float32 and with a learning rate that moves a tiny model in a few steps."""
    import presets

    doc = presets.default_training_config("lora")
    body = doc["training_config"]
    body["ModelConfig"]["torch_dtype"] = "float32"
    body["TrainingArguments"].update(learning_rate=0.05, save_strategy="no", report_to="none")
    path.write_text(yaml.safe_dump(doc))
    return path


def dataset(directory: Path, answer: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows = [{"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": answer}]}
            for i in range(8)]
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def tune(cache: Path, work: Path, run: int, answer: str, ref: str) -> str:
    """One `python -m tuning` run of the tiny preset that pushes to `ref`; returns the pushed digest."""
    out = work / f"out-{run}"
    cmd = [sys.executable, "-m", "tuning", "--preset", "tiny", "--config", str(training_config(work / "cfg.yaml")),
           "--data", str(dataset(work / f"data-{run}", answer)), "--output", str(out), "--max-steps", "6",
           "--push", ref, "--log-level", "WARNING"]
    r = subprocess.run(cmd, cwd=ROOT, env=env(cache), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((out / "tuning_metrics.json").read_text())["pushed"]["digest"]


def workspace(path: Path, image: str, refresh: str | None = None) -> None:
    meta = {"name": "capitals"}
    if refresh is not None:
        meta["annotations"] = {"kaito.sh/adapter-refresh": refresh}
    doc = {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace", "metadata": meta,
           "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": "tiny"}}},
           "inference": {"preset": {"name": "tiny"}, "adapters": [{"source": {"name": ADAPTER, "image": image}}]}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, path)  # as an editor saves: the watcher never reads half a file


def listed(base: str) -> dict[str, dict]:
    return {m["id"]: m for m in httpx.get(base + "/v1/models", timeout=10).json()["data"]}


def complete(base: str) -> str:
    r = httpx.post(base + "/v1/completions", timeout=30,
                   json={"model": ADAPTER, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "ignore_eos": True})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def test_a_new_tuning_run_under_the_same_tag_is_served_live_after_a_refresh_bump(registry, tmp_path, port):
    cache = tmp_path / "cache"
    image = f"{registry.host}/adapters/capitals:latest"  # bare, as a Workspace names it
    first = tune(cache, tmp_path, 1, "The capital of France is Paris.", "oci://" + image)
    ws = tmp_path / "workspace.yaml"
    workspace(ws, image)
    seen = {}

    def check(base: str) -> None:
        card = listed(base)[ADAPTER]
        assert card["digest"] == first, card
        pids = replica_pids("default")
        assert len(pids) == 1, pids
        old = complete(base)
        with RequestLoop(base, ADAPTER) as loop:
            second = tune(cache, tmp_path, 2, "Kubernetes schedules pods onto nodes.", "oci://" + image)
            assert second != first
            assert listed(base)[ADAPTER]["digest"] == first  # no interval: nothing moves until the bump
            started = time.monotonic()
            workspace(ws, image, refresh="2")
            deadline = started + 30
            while listed(base)[ADAPTER]["digest"] != second:
                assert time.monotonic() < deadline, listed(base)
                time.sleep(0.1)
            new = complete(base)
            seen["first_answer_s"] = time.monotonic() - started
            time.sleep(0.5)
        assert new != old, "the second run's adapter answers differently"
        assert loop.failures == [] and loop.answers, loop.failures[:3]
        # a request running across the swap switches at a step boundary: its text may mix both versions
        assert loop.answers[0] == old and loop.answers[-1] == new, (old, new, loop.answers[0], loop.answers[-1])
        assert replica_pids("default") == pids, "no restart: the same replica process serves the new adapter"

    out = run_up(cache, port, "-f", str(ws), "--adapter-resolve-interval", "0", check=check)
    assert any("changed: applying live: applications[default].args.adapter_refresh" in ln for ln in out), out
    assert seen["first_answer_s"] <= 10, seen
