"""`kaito tune` with only the flags a newcomer types, on the CPU: it trains and writes an adapter."""
import json

import pytest

from tuning import runner
from tuning.cli import main

from .conftest import chat_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def laptop(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "DEFAULT_CONFIG", str(tmp_path / "no-mounted-config.yaml"))
    monkeypatch.setenv("KAITO_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_rows(4)))
    return tmp_path, data


def adapter_written(out):
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    return json.loads((out / "tuning_metrics.json").read_text())


def test_method_data_output_and_base_model_are_enough(laptop):
    tmp, data = laptop
    from tinymodel import build_tiny_model

    base = build_tiny_model(tmp / "my-model")
    out = tmp / "out"
    assert main(["--method", "lora", "--data", str(data), "--output", str(out), "--base-model", str(base)]) == 0
    metrics = adapter_written(out)
    # KAITO's lora template: 3 epochs (TrainingArguments' default) of batch size 1 over 4 records
    assert metrics["steps"] == 12 and metrics["base_model"] == "my-model"


def test_preset_tiny_tunes_the_locally_built_tiny_model(laptop):
    tmp, data = laptop
    out = tmp / "out"
    assert main(["--preset", "tiny", "--data", str(data), "--output", str(out), "--max-steps", "2"]) == 0
    metrics = adapter_written(out)
    assert metrics["steps"] == 2 and metrics["base_model"] == "tiny"
