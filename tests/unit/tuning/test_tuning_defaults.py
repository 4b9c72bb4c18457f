"""`kaito tune` on a laptop: with no --config and no mounted file it uses the template the hooks ship."""
import json
from pathlib import Path

import pytest
import yaml

from hooks.tools.render import render
from tuning import runner
from tuning.cli import build_parser, main
from tuning.config import load_training_config, parse_training_config
from tuning.runner import TuneRequest
from tests.support.seeds import with_real_references

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def no_mounted_config(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "DEFAULT_CONFIG", str(tmp_path / "mnt" / "training_config.yaml"))
    return Path(runner.DEFAULT_CONFIG)


def hooks_configmap_config(method: str) -> str:
    """The training_config.yaml the hooks put in a tuning Workspace's ConfigMap for `method`."""
    ws = with_real_references(yaml.safe_load((ROOT / "examples/tuning/kaito_workspace_tuning_phi_3.yaml").read_text()))
    ws["tuning"]["method"] = method
    objects, _ = render(ws)
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    assert len(maps) == 1, [o["kind"] for o in objects]
    (text,) = maps[0]["data"].values()
    return text


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_no_config_means_the_hooks_default_template_for_the_method(no_mounted_config, method):
    used = runner.training_config(TuneRequest(method=method))
    shipped = parse_training_config(yaml.safe_load(hooks_configmap_config(method)), method)
    assert used == shipped
    assert used.method == method and used.quantized == (method == "qlora")


def test_a_mounted_config_still_wins_over_the_template(no_mounted_config):
    doc = yaml.safe_load(hooks_configmap_config("lora"))
    doc["training_config"]["LoraConfig"]["r"] = 4
    no_mounted_config.parent.mkdir()
    no_mounted_config.write_text(yaml.safe_dump(doc))
    assert runner.training_config(TuneRequest(method="lora")).lora["r"] == 4
    assert load_training_config(no_mounted_config, "lora") == runner.training_config(TuneRequest(method="lora"))


def test_config_help_says_what_the_default_is():
    action = next(a for a in build_parser()._actions if "--config" in a.option_strings)
    assert action.default is None and "default template for --method" in action.help


def test_preset_tiny_without_base_model_is_the_locally_built_tiny_model(tmp_path, monkeypatch, no_mounted_config):
    monkeypatch.setenv("KAITO_CACHE_DIR", str(tmp_path / "cache"))
    request = TuneRequest(method="lora", preset="tiny")
    source = runner.base_model_source(request, runner.training_config(request), runner.lookup_preset("tiny"))
    from tinymodel import tiny_model_dir

    assert Path(source) == tiny_model_dir() and (Path(source) / "config.json").is_file()


def test_only_the_newcomer_flags_refuse_a_dataset_without_usable_columns(tmp_path, caplog, no_mounted_config):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(json.dumps({"question": "a", "answer": "b"}) + "\n")
    caplog.clear()
    code = main(["--method", "lora", "--data", str(data), "--output", str(tmp_path / "out"),
                 "--base-model", str(tmp_path / "no-model-needed-to-refuse")])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 1 and "found: question, answer" in errors[0]
    assert "'messages'" in errors[0] and "'prompt' + 'completion'" in errors[0]
    assert not (tmp_path / "out").exists(), "refused before training"
