"""The tiny preset's model: built locally, fast, deterministic, and a normal HF model directory."""
import hashlib

import pytest

from tinymodel import build_tiny_model, ensure_tiny_model


def _digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=1)
    b = build_tiny_model(tmp_path / "b", seed=1)
    c = build_tiny_model(tmp_path / "c", seed=2)
    assert _digests(a) == _digests(b)
    assert _digests(a)["model.safetensors"] != _digests(c)["model.safetensors"]
    assert _digests(a)["tokenizer.json"] == _digests(c)["tokenizer.json"]


@pytest.mark.parametrize("architecture", ["phi3", "llama"])
def test_loads_and_generates_with_chat_template(tmp_path, architecture):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_model(tmp_path, architecture=architecture)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|user|>\nHello<|end|>\n<|assistant|>\n"
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5
    assert model.config.vocab_size == len(tokenizer)


def test_overrides_change_the_shape_and_unknown_ones_are_refused(tmp_path):
    from transformers import AutoConfig

    path = build_tiny_model(tmp_path, architecture="llama", hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    config = AutoConfig.from_pretrained(path)
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads) == (32, 1, 1)
    with pytest.raises(TypeError, match="unknown tiny model option"):
        build_tiny_model(tmp_path / "x", hidden=3)


def test_ensure_builds_once_into_the_cache(tmp_path):
    first = ensure_tiny_model(tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = ensure_tiny_model(tmp_path)
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "models").iterdir()] == [first.name]  # no staging leftovers
