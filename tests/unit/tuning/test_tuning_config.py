"""training_config.yaml validation: KAITO's templates pass; every bad key or contradiction is named."""
import copy
from pathlib import Path

import pytest
import yaml

import presets
from tuning.config import load_training_config, parse_training_config
from tuning.errors import ConfigError

SEED = Path(__file__).parents[3] / "examples" / "tuning" / "kaito_workspace_tuning_phi_3.yaml"


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_kaito_default_templates_are_accepted(method):
    cfg = parse_training_config(presets.default_training_config(method), method)
    assert cfg.quantized is (method == "qlora")
    assert cfg.lora == {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0}
    assert cfg.dataset.train_test_split == 1 and cfg.dataset.shuffle_dataset is True
    assert cfg.training["save_strategy"] == "epoch"


def test_seed_tuning_workspace_config_is_accepted(tmp_path):
    """The seed example has no tuning.config, so the hook mounts the default template for its method."""
    workspace = yaml.safe_load(SEED.read_text())
    method = workspace["tuning"]["method"]
    path = tmp_path / "training_config.yaml"
    path.write_text(yaml.safe_dump(presets.default_training_config(method)))
    cfg = load_training_config(path, method)
    assert cfg.method == "qlora"
    assert cfg.quantization["bnb_4bit_quant_type"] == "nf4"


def _with(method: str, section: str, **values) -> dict:
    doc = copy.deepcopy(presets.default_training_config(method))
    doc["training_config"].setdefault(section, {}).update(values)
    return doc


BAD = [
    ("lora", _with("lora", "LoraConfig", rank=8), "LoraConfig: unknown key 'rank'"),
    ("lora", _with("lora", "TrainingArguments", save_step=5), "did you mean 'save_steps'"),
    ("lora", _with("lora", "ModelConfig", model_path="/x"), "ModelConfig: unknown key 'model_path'"),
    ("lora", _with("lora", "DatasetConfig", text_column="t"), "DatasetConfig: unknown key 'text_column'"),
    ("qlora", _with("qlora", "QuantizationConfig", load_in_3bit=True), "unknown key 'load_in_3bit'"),
    ("lora", _with("lora", "DataCollator", mask_prob=0.1), "DataCollator: unknown key 'mask_prob'"),
    ("qlora", _with("qlora", "QuantizationConfig", load_in_8bit=True), "load_in_4bit and load_in_8bit are both true"),
    ("lora", _with("lora", "QuantizationConfig", load_in_4bit=True), "method is 'lora'"),
    ("qlora", _with("qlora", "QuantizationConfig", load_in_4bit=False), "method 'qlora' needs a quantized base"),
    ("qlora", _with("qlora", "QuantizationConfig", bnb_4bit_quant_type="nf5"), "bnb_4bit_quant_type: 'nf5'"),
    ("lora", _with("lora", "TrainingArguments", save_strategy="hourly"), "TrainingArguments: hourly"),
    ("lora", _with("lora", "DatasetConfig", train_test_split=0), "train_test_split must be in (0, 1]"),
    ("lora", _with("lora", "DatasetConfig", shuffle_dataset="yes"), "DatasetConfig.shuffle_dataset: expected bool"),
    ("lora", _with("lora", "DatasetConfig", dataset_extension="xlsx"), "dataset_extension 'xlsx'"),
    ("lora", _with("lora", "ModelConfig", torch_dtype="float8"), "torch_dtype 'float8'"),
    ("lora", _with("lora", "LoraConfig", lora_dropout="high"), "LoraConfig.lora_dropout: expected float"),
    ("lora", _with("lora", "LoraConfig", bias="everything"), "LoraConfig.bias: 'everything' is not accepted"),
    ("lora", _with("lora", "LoraConfig", r=0), "LoraConfig.r must be at least 1"),
    # adapters the serving engine could not load (contract/lora.py): refused before any training
    ("lora", _with("lora", "LoraConfig", use_dora=True), "LoraConfig.use_dora is True, but the serving engine serves only use_dora: False"),
    ("qlora", _with("qlora", "LoraConfig", bias="all"), "LoraConfig.bias is 'all', but the serving engine serves only bias: 'none'"),
    ("lora", _with("lora", "LoraConfig", modules_to_save=["lm_head"]), "LoraConfig.modules_to_save is ['lm_head']"),
    ("lora", {"training_config": {"LoRAConfig": {}}}, "unknown section 'LoRAConfig' (did you mean 'LoraConfig'?)"),
    ("lora", {"ModelConfig": {}}, "needs the top key 'training_config'"),
    ("sft", presets.default_training_config("lora"), "method 'sft' is not supported; accepted: lora, qlora"),
]


@pytest.mark.parametrize("method,doc,message", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_config_is_rejected_with_the_key_named(method, doc, message):
    with pytest.raises(ConfigError) as err:
        parse_training_config(doc, method)
    assert message in str(err.value)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read training config"):
        load_training_config(tmp_path / "missing.yaml", "lora")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training_config: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_training_config(bad, "lora")
