"""`kaito tune` fails with one clear message, before any download or model load, on bad input."""
import json
import sys

import pytest
import yaml

import presets
from kaito_cli import main as kaito
from tuning.cli import main
from tuning.runner import TuneRequest, accelerate_command

MISSING_MODEL = "/nonexistent/base-model"  # reaching the model load would fail differently


@pytest.fixture
def setup(tmp_path):
    config = tmp_path / "training_config.yaml"
    config.write_text(yaml.safe_dump(presets.default_training_config("lora")))
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    return tmp_path, config, data


def run(caplog, *args):
    caplog.clear()
    code = main(list(args))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    return code, errors


def test_bad_config_key(setup, caplog):
    tmp, config, data = setup
    doc = presets.default_training_config("lora")
    doc["training_config"]["TrainingArguments"]["num_epochs"] = 2
    config.write_text(yaml.safe_dump(doc))
    code, errors = run(caplog, "--config", str(config), "--data", str(data), "--base-model", MISSING_MODEL,
                       "--output", str(tmp / "out"))
    assert code == 1 and "TrainingArguments: unknown key 'num_epochs'" in errors[0]
    assert not (tmp / "out").exists()


def test_method_contradicting_the_config(setup, caplog):
    tmp, config, data = setup
    code, errors = run(caplog, "--method", "qlora", "--config", str(config), "--data", str(data),
                       "--base-model", MISSING_MODEL, "--output", str(tmp / "out"))
    assert code == 1 and "method 'qlora' needs a quantized base model" in errors[0]


@pytest.mark.parametrize("url,message", [
    ("http://127.0.0.1:9/train.parquet", "loopback"),
    ("http://169.254.169.254/latest/meta-data", "metadata"),
    ("ftp://example.com/train.csv", "accepted schemes: http, https"),
])
def test_unsafe_url_is_refused_before_download(setup, caplog, url, message):
    tmp, config, data = setup
    code, errors = run(caplog, "--config", str(config), "--data", str(tmp / "dl"), "--input-url", url,
                       "--base-model", MISSING_MODEL, "--output", str(tmp / "out"))
    assert code == 1 and message in errors[0]
    assert not (tmp / "dl").exists()


def test_dataset_without_usable_columns(setup, caplog):
    tmp, config, data = setup
    (data / "train.jsonl").write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    code, errors = run(caplog, "--config", str(config), "--data", str(data), "--base-model", MISSING_MODEL,
                       "--output", str(tmp / "out"))
    assert code == 1 and "no usable columns; found: instruction, output" in errors[0]


def test_unknown_preset(setup, caplog):
    tmp, config, data = setup
    code, errors = run(caplog, "--preset", "gpt-5", "--config", str(config), "--data", str(data),
                       "--output", str(tmp / "out"))
    assert code == 1 and "unknown preset 'gpt-5'" in errors[0]


def test_missing_base_model_directory(setup, caplog):
    tmp, config, data = setup
    code, errors = run(caplog, "--config", str(config), "--data", str(data), "--base-model", MISSING_MODEL,
                       "--output", str(tmp / "out"))
    assert code == 1 and "base model '/nonexistent/base-model' is not an existing directory" in errors[0]


def test_kaito_tune_is_wired_and_bad_flags_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        kaito(["tune", "--method", "sft"])
    assert err.value.code == 2 and "invalid choice: 'sft'" in capsys.readouterr().err


def test_import_is_light():
    import subprocess
    code = "import sys, tuning.cli; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_multi_gpu_launch_command(tmp_path):
    request = TuneRequest(method="qlora", config_path=tmp_path / "c.yaml", preset="phi-3-mini-4k-instruct",
                          max_steps=50, push="registry/x:1", input_urls=["https://example.com/d.parquet"])
    cmd = accelerate_command(request, tmp_path / "data", tmp_path / "weights", tmp_path / "out", 4)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert "--num_processes=4" in cmd and "--num_machines=1" in cmd and cmd[cmd.index("-m", 3) + 1] == "tuning"
    assert cmd[cmd.index("--data") + 1] == str(tmp_path / "data")  # children read what the parent fetched
    assert "--push" not in cmd and "--input-url" not in cmd  # the parent pushes once, children never download
