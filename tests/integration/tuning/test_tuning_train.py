"""End to end on the tiny model: URL dataset -> LoRA/QLoRA training -> adapter -> push -> pull."""
from __future__ import annotations

import json
import logging

import pytest

import artifacts
from tests.support.registry import registry_fixture
from tuning.cli import main

STEPS = {"lora": 16, "qlora": 8}
registry = registry_fixture(users={"tuner": "s3cret-pass"})


def _train(write_config, method, tiny_model, data_server, workdir, *extra):
    # QLoRA also exercises gradient checkpointing through prepare_model_for_kbit_training.
    config = write_config(workdir / f"{method}.yaml", method, gradient_checkpointing=method == "qlora")
    out = workdir / f"out-{method}"
    code = main(["--method", method, "--config", str(config), "--base-model", str(tiny_model), "--preset", "tiny",
                 "--data", str(workdir / f"data-{method}"), "--output", str(out), "--allow-private-urls",
                 "--input-url", data_server.url("train-00000-of-00001.parquet") + "?download=true",
                 "--max-steps", str(STEPS[method]), *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def runs(tuning_config, tiny_model, data_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tune")
    return {method: _train(tuning_config, method, tiny_model, data_server, workdir) for method in ("lora", "qlora")}


def _metrics(out):
    return json.loads((out / "tuning_metrics.json").read_text())


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_run_finishes_and_loss_decreases(runs, method):
    out = runs[method]
    metrics = _metrics(out)
    assert metrics["steps"] == STEPS[method]
    losses = [loss for _, loss in metrics["loss_history"]]
    assert len(losses) == STEPS[method]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert metrics["eval_examples"] > 0 and metrics["eval_loss"] is not None
    assert metrics["train_tokens"] > 0 and metrics["tokens_per_second"] > 0
    assert (out / "fine_tuning_completed.txt").read_text().startswith("Fine-Tuning completed at")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny"  # never the pod-local path
    assert config["target_modules"] and set(config["target_modules"]) <= {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert (out / "adapter_model.safetensors").stat().st_size > 0


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_adapter_loads_on_the_base_and_changes_greedy_output(runs, tiny_model, method):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of Japan?"}],
                                           tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)

    def greedy(model):
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return ids[0, inputs["input_ids"].shape[1]:].tolist()

    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    before = greedy(base)
    tuned = PeftModel.from_pretrained(base, runs[method]).eval()
    assert greedy(tuned) != before


def test_push_then_pull_is_byte_identical(runs, registry, tmp_path, monkeypatch, tiny_model, data_server,
                                          tuning_config):
    out = runs["lora"]
    docker_dir = tmp_path / "push-secret"
    registry.docker_config(docker_dir)  # the mounted imagePushSecret ($DOCKER_CONFIG/config.json)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_dir))
    ref = registry.ref("adapters/tiny-lora", "0.0.1")
    # The output directory already holds a completed adapter: a restarted Job only pushes.
    assert _train(tuning_config, "lora", tiny_model, data_server, out.parent, "--push", ref) == out
    metrics = _metrics(out)
    assert metrics["pushed"]["ref"] == ref and metrics["pushed"]["digest"].startswith("sha256:")
    pulled = artifacts.resolve(ref, dest=tmp_path / "pulled", docker_config=docker_dir)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (pulled / name).read_bytes() == (out / name).read_bytes()


def test_push_without_credentials_fails_clearly(runs, registry, tmp_path, caplog, monkeypatch, tuning_config):
    empty = tmp_path / "empty-secret"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"auths": {}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    config = tuning_config(tmp_path / "lora.yaml", "lora")
    with caplog.at_level(logging.ERROR):
        code = main(["--method", "lora", "--config", str(config), "--output", str(runs["lora"]),
                     "--push", registry.ref("adapters/denied", "1")], )
    assert code == 1
    message = " ".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert "pushing the adapter to" in message and "s3cret-pass" not in message


def test_dataset_from_an_input_image(registry, tmp_path, monkeypatch):
    """tuning.input.image: the data is an OCI artifact (KAITO's data image content) pulled with artifacts."""
    from tuning.config import DatasetConfig
    from tuning.runner import TuneRequest, load_dataset_records, prepare_data

    docker_dir = tmp_path / "pull-secret"
    registry.docker_config(docker_dir)
    source = tmp_path / "dataset"
    (source / "data").mkdir(parents=True)
    rows = [{"prompt": f"Count to {i}", "completion": " ".join(map(str, range(1, i + 1)))} for i in range(1, 11)]
    (source / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ref = registry.ref("datasets/counting", "v1")
    artifacts.push(source, ref, docker_config=docker_dir)

    data_dir = prepare_data(TuneRequest(method="lora", input_image=ref, docker_config=str(docker_dir)))
    cfg = type("Cfg", (), {"dataset": DatasetConfig(train_test_split=0.8, shuffle_dataset=False)})()
    layout, train_rows, eval_rows = load_dataset_records(data_dir, cfg)
    assert layout.shape.value == "prompt/completion"
    assert train_rows + eval_rows == rows and len(eval_rows) == 2
