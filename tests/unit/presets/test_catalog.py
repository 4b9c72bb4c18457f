import re

import pytest

import presets
from presets.cli import preset_table

REQUIRED = [
    "phi-2", "phi-3-mini-4k-instruct", "phi-3-mini-128k-instruct", "phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct", "phi-3.5-mini-instruct", "phi-4", "phi-4-mini-instruct", "mistral-7b",
    "mistral-7b-instruct", "falcon-7b", "falcon-7b-instruct", "falcon-40b", "falcon-40b-instruct",
    "qwen2.5-coder-7b-instruct", "llama-3.1-8b-instruct", "deepseek-r1-distill-llama-8b", "tiny",
]


def test_catalog_has_every_required_preset():
    assert set(REQUIRED) <= {p.name for p in presets.list_presets()}


@pytest.mark.parametrize("name", [n for n in REQUIRED if n != "tiny"])
def test_downloadable_presets_pin_a_revision_and_say_how_numbers_were_made(name):
    p = presets.get_preset(name)
    assert re.fullmatch(r"[0-9a-f]{40}", p.revision)
    assert p.source == f"hf://{p.hf_repo}@{p.revision}"
    assert p.parameters > 1e9 and p.weight_bytes > p.parameters  # 16-bit weights
    assert p.gpu_count >= 1 and p.total_gpu_memory_gib > 0 and p.disk_gib > p.weight_gib
    assert p.lora_target_modules and p.chat_template and presets.chat_template(p.chat_template)
    assert p.derived
    assert not p.trust_remote_code  # transformers has these architectures natively
    if p.tunable:
        assert p.tuning_total_gpu_memory_gib and p.tuning_per_gpu_memory_gib


@pytest.mark.parametrize(("name", "gpus", "memory", "disk"), [
    # KAITO v0.4.6 catalog (reference/kaito.md §3)
    ("phi-3-mini-4k-instruct", 1, 9, 80), ("phi-3-medium-128k-instruct", 1, 28, 120), ("falcon-40b", 2, 90, 280),
    ("mistral-7b-instruct", 1, 16, 90), ("deepseek-r1-distill-llama-8b", 1, 16.5, 90), ("phi-4", 1, 40, 150),
])
def test_numbers_follow_kaito(name, gpus, memory, disk):
    p = presets.get_preset(name)
    assert (p.gpu_count, p.total_gpu_memory_gib, p.disk_gib) == (gpus, memory, disk)


# KAITO HEAD's presets/workspace/models/supported_models.yaml: the entries with
# `downloadAuthRequired: true`. No KAITO version ever gated mistral-7b or mistral-7b-instruct.
KAITO_DOWNLOAD_AUTH_REQUIRED = {"llama-3.1-8b-instruct", "llama-3.3-70b-instruct"}
# Every model of that file (its `base` entry is an image without weights, not a model).
KAITO_HEAD_MODELS = {
    "llama-3.1-8b-instruct", "llama-3.3-70b-instruct", "deepseek-r1-0528", "deepseek-v3-0324", "falcon-7b",
    "falcon-7b-instruct", "falcon-40b", "falcon-40b-instruct", "mistral-7b", "mistral-7b-instruct",
    "ministral-3-3b-instruct", "ministral-3-8b-instruct", "ministral-3-14b-instruct", "mistral-large-3-675b-instruct",
    "phi-2", "phi-3-mini-4k-instruct", "phi-3-mini-128k-instruct", "phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct", "phi-3.5-mini-instruct", "phi-4-mini-instruct", "phi-4", "qwen2.5-coder-7b-instruct",
    "qwen2.5-coder-32b-instruct", "deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-llama-8b",
    "gemma-3-4b-instruct", "gemma-3-27b-instruct", "gpt-oss-20b", "gpt-oss-120b",
}
KAITO_V03_PRIVATE = {"llama-2-7b", "llama-2-7b-chat", "llama-2-13b", "llama-2-13b-chat", "llama-2-70b", "llama-2-70b-chat"}


def test_gated_presets_are_exactly_kaitos_download_auth_required_list():
    assert {p.name for p in presets.list_presets() if p.gated} == KAITO_DOWNLOAD_AUTH_REQUIRED
    assert all(p.gated == p.download_auth_required for p in presets.list_presets())


def test_catalog_has_every_model_of_kaito_head_and_v03s_private_llama_2():
    assert KAITO_HEAD_MODELS | KAITO_V03_PRIVATE <= {p.name for p in presets.list_presets()}


@pytest.mark.parametrize("name", sorted(KAITO_V03_PRIVATE))
def test_llama_2_presets_are_private_as_in_kaito_v03(name):
    p = presets.get_preset(name)
    assert p.access_mode == "private" and not p.gated and p.derived


@pytest.mark.parametrize("name", sorted(KAITO_HEAD_MODELS - set(REQUIRED)))
def test_new_kaito_head_presets_pin_kaitos_revision_and_fit_their_gpu_count(name):
    p = presets.get_preset(name)
    assert re.fullmatch(r"[0-9a-f]{40}", p.revision) and p.derived and p.access_mode == "public"
    assert p.total_gpu_memory_gib >= p.weight_gib - 0.01 and p.disk_gib > p.weight_gib
    # enough GPUs of the largest per-GPU memory in the SKU table to hold the weights
    largest = max(s.memory_per_gpu_gib for s in presets.list_skus())
    assert p.gpu_count * largest >= p.total_gpu_memory_gib


@pytest.mark.parametrize(("name", "gpus", "memory", "disk"), [
    # KAITO v0.7.2 presets/workspace/models/*/model.go (weights and disk); gpu counts derived
    ("deepseek-r1-0528", 8, 641.3, 800), ("llama-3.3-70b-instruct", 2, 131.42, 220),
    ("qwen2.5-coder-32b-instruct", 1, 61.03, 230), ("gpt-oss-20b", 1, 12.9, 110), ("gpt-oss-120b", 1, 60.77, 250),
    # KAITO v0.3.2 presets/models/llama2{,chat}/model.go
    ("llama-2-13b", 2, 30, 46), ("llama-2-70b-chat", 8, 192, 158),
])
def test_new_numbers_follow_kaito(name, gpus, memory, disk):
    p = presets.get_preset(name)
    assert (p.gpu_count, p.total_gpu_memory_gib, p.disk_gib) == (gpus, memory, disk)


def test_tiny_preset_is_local():
    tiny = presets.get_preset("tiny")
    assert tiny.source is None and tiny.tiny is not None and tiny.gpu_count == 0


def test_unknown_preset_error_lists_names():
    with pytest.raises(presets.PresetNotFound) as info:
        presets.get_preset("gpt-5")
    assert "unknown preset 'gpt-5'; accepted: phi-2," in str(info.value)


@pytest.mark.parametrize(("sku", "gpus", "memory", "model"), [
    ("Standard_NC6s_v3", 1, 16, "V100"), ("Standard_NC24ads_A100_v4", 1, 80, "A100"),
    ("Standard_ND96isr_H100_v5", 8, 640, "H100"), ("Standard_ND96isr_H200_v5", 8, 1128, "H200"),
    ("p3.2xlarge", 1, 16, "V100"), ("p4d.24xlarge", 8, 320, "A100"), ("p5.48xlarge", 8, 640, "H100"),
    ("g4dn.xlarge", 1, 16, "T4"), ("g5.48xlarge", 8, 192, "A10G"), ("p5e.48xlarge", 8, 1128, "H200"),
    ("Standard_NC80adis_H100_v5", 2, 188, "H100"), ("g6.12xlarge", 4, 96, "L4"),
])
def test_sku_table(sku, gpus, memory, model):
    s = presets.get_sku(sku)
    assert (s.gpus, s.memory_gib, s.model) == (gpus, memory, model)
    assert presets.get_sku("m5.large") is None


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_default_training_configs(method):
    config = presets.default_training_config(method)["training_config"]
    assert config["QuantizationConfig"]["load_in_4bit"] is (method == "qlora")
    assert config["LoraConfig"] == {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0}
    config["LoraConfig"]["r"] = 64  # a fresh copy each call
    assert presets.default_training_config(method)["training_config"]["LoraConfig"]["r"] == 8
    with pytest.raises(ValueError, match="accepted: lora, qlora"):
        presets.default_training_config("dora")


def test_markdown_table_has_a_row_per_preset():
    table = preset_table(markdown=True).splitlines()
    assert len(table) == 2 + len(presets.list_presets())
    assert table[2].startswith("| phi-2 (deprecated) | microsoft/phi-2@ef38235 |")


def test_readme_table_is_current():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert preset_table(markdown=True) in readme, "run: kaito presets --markdown and paste it into README.md"
