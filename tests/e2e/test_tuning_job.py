"""The tuning Job's pod run for real: the hooks (in their container) render a tiny-preset tuning
Workspace's Job, and the pod runner runs its pod template from the runtime image.

- Tune -> push -> serve: the dataset comes from an image in the local registry, the adapter is
  pushed to it with the push Secret mounted as DOCKER_CONFIG, and an inference Workspace listing
  that adapter image serves it as its own model.
- Killed and replaced: a Workspace whose output is a PersistentVolumeClaim; its pod is SIGKILLed
  after the first checkpoint, and the Job's next pod, on the same volume, resumes from the newest
  checkpoint (step > 0) and finishes at the configured step count.
"""
from __future__ import annotations

import base64
import copy
import json
import re
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import artifacts
from tests.e2e.conftest import RUNTIME_REF
from tests.e2e.workspaces import apply, check_inits, example, get, head_pod, healthy, hook_world, post
from tests.integration.tuning.conftest import chat_rows, write_config
from tests.support.pods import Objects, PodRunner
from tests.support.registry import _free_port, registry_fixture

registry = registry_fixture()
CONFIG_NAME = "tiny-lora-params"
PUSH_SECRET = "registry-push-secret"
TUNED = "capitals"
#: The push run is short; the kill/resume run is long enough to be killed between checkpoints.
PUSH_STEPS, RESUME_STEPS, SAVE_STEPS = 8, 60, 5


@pytest.fixture(scope="module")
def dataset_ref(registry, tmp_path_factory):
    data = tmp_path_factory.mktemp("dataset")
    pq.write_table(pa.Table.from_pylist(chat_rows(64)), data / "train.parquet")
    artifacts.push(data, registry.ref("datasets/capitals", "1"))
    return f"{registry.host}/datasets/capitals:1"


def _config_map(tmp: Path, max_steps: int) -> dict:
    """The user's training config ConfigMap (`tuning.config`): KAITO's LoRA template, a few steps."""
    text = write_config(tmp / "training_config.yaml", "lora", max_steps=max_steps, save_steps=SAVE_STEPS,
                        logging_steps=SAVE_STEPS).read_text()
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_NAME, "namespace": "default"},
            "data": {"training_config.yaml": text}}


def _push_secret(registry_host: str) -> dict:
    # The local registry wants no credentials; the entrypoint still reads them from the mounted Secret.
    config = {"auths": {registry_host: {"auth": base64.b64encode(b"kaito:unused").decode()}}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": PUSH_SECRET, "namespace": "default"},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def _tuning_workspace(name: str, dataset: str, output: dict) -> dict:
    ws = example("inference/kaito_workspace_tiny.yaml")
    ws["metadata"]["name"] = name
    del ws["inference"]
    ws["tuning"] = {"preset": {"name": "tiny"}, "method": "lora", "config": CONFIG_NAME,
                    "input": {"name": "capitals", "image": dataset}, "output": output}
    return ws


def _job_pod(world, name: str, runtime_image: str, registry_host: str, objects: Objects, workdir: Path,
             pod: str, claims: dict | None = None) -> PodRunner:
    job = get(world, "batch/v1", "Job", name)
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    return PodRunner(pod, copy.deepcopy(job["spec"]["template"]["spec"]), objects, images={RUNTIME_REF: runtime_image},
                     extra_env={"KAITO_INSECURE_REGISTRIES": registry_host}, workdir=workdir, claims=claims or {})


def _run_to_completion(pod: PodRunner, timeout: float) -> tuple[str, float]:
    """Run the Job's pod until its tuning container exits 0: (its output, seconds taken)."""
    try:
        t0 = time.monotonic()
        pod.start()
        check_inits(pod)
        state = pod.wait_exit("tuning", timeout, "the tuning container to finish")
        took = time.monotonic() - t0
        logs = pod.logs("tuning", 400)
    finally:
        pod.remove()
    assert state["exitCode"] == 0, f"tuning exited {state['exitCode']}: {state.get('message')}\n{logs}"
    return logs, took


def test_tuning_job_pushes_an_adapter_that_an_inference_workspace_serves(
        hook_pod, runtime_image, registry, dataset_ref, tmp_path):
    world = hook_world(hook_pod)
    name = "workspace-tuning-tiny"
    adapter = f"{registry.host}/adapters/{TUNED}:1"
    ws = _tuning_workspace(name, dataset_ref, {"image": adapter, "imagePushSecret": PUSH_SECRET})
    apply(world, ws, ("batch/v1", "Job", name))
    objects = Objects(config_maps={CONFIG_NAME: _config_map(tmp_path, PUSH_STEPS)},
                      secrets={PUSH_SECRET: _push_secret(registry.host)})
    job = _job_pod(world, name, runtime_image, registry.host, objects, tmp_path, f"{name}-tq8zl")
    logs, tuned_in = _run_to_completion(job, 300)
    print(f"\ntuning Job pod (tiny, {PUSH_STEPS} steps, dataset pulled, adapter pushed): {tuned_in:.1f}s")
    pulled = Path(artifacts.resolve(adapter, cache_dir=tmp_path / "cache"))
    assert (pulled / "adapter_config.json").is_file() and any(pulled.glob("adapter_model.*")), sorted(pulled.iterdir())
    assert f"step {PUSH_STEPS}/{PUSH_STEPS}" in logs, logs[-3000:]

    inference = example("inference/kaito_workspace_tiny.yaml")
    inference["inference"]["adapters"] = [{"source": {"name": TUNED, "image": adapter}}]
    serve_name = inference["metadata"]["name"]
    apply(world, inference, ("apps/v1", "Deployment", serve_name))
    http_port = _free_port()
    head = head_pod(world, serve_name, runtime_image, registry.host, tmp_path, http_port=http_port,
                    ray_port=_free_port())
    url = f"http://127.0.0.1:{http_port}"
    try:
        head.start()
        check_inits(head)
        head.wait_running("serve", lambda: healthy(url), f"{url}/healthz 200 (Serve deployed, model loaded)", 300)
        with urllib.request.urlopen(url + "/v1/models", timeout=10) as r:
            models = {m["id"] for m in json.loads(r.read())["data"]}
        assert TUNED in models, models
        answers = {}
        for model in ("tiny", TUNED):
            status, body = post(url + "/v1/chat/completions", {
                "model": model, "messages": [{"role": "user", "content": "What is the capital of Kenya?"}],
                "max_tokens": 8, "temperature": 0})
            assert status == 200 and body["model"] == model, body
            answers[model] = body["choices"][0]["message"]["content"]
        print(f"answers: {answers}")
        assert answers[TUNED] != answers["tiny"], answers  # the tuned adapter changes what the model says
    finally:
        head.remove()


def test_killed_tuning_pod_resumes_from_its_checkpoint_on_the_same_volume(
        hook_pod, runtime_image, registry, dataset_ref, tmp_path):
    world = hook_world(hook_pod)
    name = "workspace-tuning-resume"
    claim = "tuning-results"
    ws = _tuning_workspace(name, dataset_ref, {"volumeSource": {"persistentVolumeClaim": {"claimName": claim}}})
    apply(world, ws, ("batch/v1", "Job", name))
    objects = Objects(config_maps={CONFIG_NAME: _config_map(tmp_path, RESUME_STEPS)})
    volume = tmp_path / "pv"
    volume.mkdir()
    first = _job_pod(world, name, runtime_image, registry.host, objects, tmp_path, f"{name}-a1b2c", {claim: volume})
    try:
        first.start()
        check_inits(first)
        # The volume is a host directory: watch it directly, the Trainer writes trainer_state.json last.
        first.wait_running("tuning", lambda: any(volume.glob("checkpoint-*/trainer_state.json")),
                           "the first complete checkpoint on the volume", 240)
        first.kill("tuning")  # a node failure: the Job controller starts a new pod
        state = first.wait_exit("tuning", 30)
        killed_logs = first.logs("tuning", 400)
    finally:
        first.remove()
    saved = [int(s) for s in re.findall(r"checkpoint saved at step (\d+)", killed_logs)]
    assert state["exitCode"] == 137 and saved, (state, killed_logs[-2000:])
    assert not (volume / "fine_tuning_completed.txt").exists(), "the run finished before it was killed"
    checkpoints = sorted(int(p.name.split("-")[1]) for p in volume.glob("checkpoint-*"))
    print(f"\nkilled after checkpoint(s) {saved}; on the volume: {checkpoints}")

    second = _job_pod(world, name, runtime_image, registry.host, objects, tmp_path, f"{name}-d3e4f", {claim: volume})
    logs, took = _run_to_completion(second, 300)
    resumed = re.search(r"resuming from checkpoint checkpoint-(\d+) \(step (\d+)\)", logs)
    assert resumed and int(resumed.group(2)) > 0, logs[-3000:]
    assert int(resumed.group(2)) >= max(saved) - SAVE_STEPS, (resumed.group(0), saved)
    metrics = json.loads((volume / "tuning_metrics.json").read_text())
    assert metrics["steps"] == RESUME_STEPS and metrics["resumed_from"] == f"checkpoint-{resumed.group(1)}", metrics
    assert (volume / "fine_tuning_completed.txt").exists()
    print(f"replacement pod: {resumed.group(0)}, finished at step {metrics['steps']} in {took:.1f}s")
