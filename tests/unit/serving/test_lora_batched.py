"""The batched LoRA forward (serving/lora.py) against peft itself, on a tiny Llama (no Ray, no HTTP):
a mixed batch's logits equal peft's per-adapter output, the strength combination equals peft's
add_weighted_adapter("cat"), a base row and strength 0 are exactly the base, attaching and detaching
leaves the other adapters as they were, greedy tokens through the engine equal peft's generate with
each adapter, and adapter kinds the batched forward cannot compute are refused by name."""
import asyncio
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from serving.engine import Engine
from serving.facade import BASE
from serving.loading import load_model
from serving.lora import AdapterError, Slots, linear_shapes, read

from .conftest import attach_adapters, peft_model
from .test_serving_engine_memory import greedy, random_prompt, reference, run

LLAMA_TARGETS = ["q_proj", "v_proj"]


def build(base_dir, out, seed, **config):
    """A LoRA adapter over `base_dir` with random A and B (peft zeroes B) and the given LoraConfig fields."""
    from peft import LoraConfig, get_peft_model

    cfg = dict(r=4, lora_alpha=8, target_modules=LLAMA_TARGETS, task_type="CAUSAL_LM") | config
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(**cfg))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_models, tmp_path_factory):
    """Five adapters of different ranks, scalings and targets (rsLoRA, an alpha pattern, all linears)."""
    base, root = tiny_models["llama"], tmp_path_factory.mktemp("lora-batched")
    kinds = {"a": {}, "b": {"r": 8, "use_rslora": True}, "c": {"r": 2, "alpha_pattern": {"v_proj": 32}},
             "d": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
             "e": {"r": 6, "lora_alpha": 3}}
    return {name: build(base, root / name, seed=i + 1, **cfg) for i, (name, cfg) in enumerate(kinds.items())}


@pytest.fixture(scope="module")
def lm(tiny_models):
    return load_model(str(tiny_models["llama"]))


def batch(lm, n, length=7):
    """n random prompts of `length` tokens, as one batch."""
    return torch.tensor([random_prompt(lm, length, seed=s) for s in range(n)])


def slots_over(base_dir, adapters, names):
    """A fresh base model with `names` attached through Slots (keys = names)."""
    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    runner = SimpleNamespace(model=model, adapter_names=None, lora=None)
    slots = Slots(runner)
    shapes = linear_shapes(model)
    for n in names:
        slots.attach(n, read(adapters[n], shapes, torch.float32))
    return model, slots


def logits(model, ids, slots=None, rows=None):
    with torch.inference_mode():
        if slots is None:
            return model(input_ids=ids).logits
        with slots.rows(rows):
            return model(input_ids=ids).logits


def test_a_mixed_batch_equals_peft_per_adapter_output(tiny_models, adapters, lm):
    names = list(adapters)
    model, slots = slots_over(tiny_models["llama"], adapters, names)
    peft = peft_model(tiny_models["llama"], adapters)
    # all five adapters and the base in one batch (every column in use), then a batch that uses two
    # of the five (only their columns take part)
    for rows in ([*names, BASE, "d", "b"], ["c", BASE, "c", "a"]):
        ids = batch(lm, len(rows))
        got = logits(model, ids, slots, rows)
        with torch.inference_mode():
            want = peft(input_ids=ids, adapter_names=rows).logits
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()
        for i, r in enumerate(rows):  # each row alone, under that adapter, is the same
            assert torch.allclose(logits(model, ids[i:i + 1], slots, [r]), got[i:i + 1], atol=1e-5, rtol=1e-4)


def test_the_strength_combination_equals_peft_cat_and_strength_zero_is_exactly_the_base(tiny_models, adapters, lm):
    model, slots = slots_over(tiny_models["llama"], adapters, ["a", "b", "d"])
    parts = [("a", 0.7), ("b", 0.3), ("d", 1.0)]
    slots.combine("mix", parts)
    slots.combine("zero", [("a", 0.0), ("d", 0.0)])
    peft = peft_model(tiny_models["llama"], {k: adapters[k] for k in "abd"}, combine=parts)
    ids = batch(lm, 3)
    got = logits(model, ids, slots, ["mix", "zero", BASE])
    with torch.inference_mode():
        peft.set_adapter("combined")
        want = peft(input_ids=ids[:1]).logits
    assert torch.allclose(got[:1], want, atol=1e-5, rtol=1e-4), (got[:1] - want).abs().max()
    plain = logits(model, ids)  # the same batch with no row on an adapter: the hooks add nothing
    assert torch.equal(got[1:], plain[1:])  # strength 0 and a base row beside adapter rows: exactly the base
    assert not torch.allclose(got[:1], plain[:1])


def test_attach_detach_and_reload_leave_the_other_adapters_unchanged(tiny_models, adapters, lm):
    model, slots = slots_over(tiny_models["llama"], adapters, ["a", "b", "c"])
    hooked = sum(len(m._forward_hooks) for m in model.modules())
    ids = batch(lm, 3)
    before = logits(model, ids, slots, ["a", "b", "c"])
    slots.detach("b")
    after = logits(model, ids[[0, 2]], slots, ["a", "c"])
    assert torch.allclose(after, before[[0, 2]], atol=1e-6)
    shapes = linear_shapes(model)
    slots.attach("b2", read(adapters["b"], shapes, torch.float32))  # a reload under a new key
    again = logits(model, ids, slots, ["a", "b2", "c"])
    assert torch.allclose(again, before, atol=1e-6)
    for key in ("a", "b2", "c"):
        slots.detach(key)
    assert hooked > 0 and sum(len(m._forward_hooks) for m in model.modules()) == 0  # the plain model again
    assert slots.runner.adapter_names is None and slots.runner.lora is None
    assert torch.equal(logits(model, ids), logits(AutoModelForCausalLM.from_pretrained(tiny_models["llama"]), ids))


def test_weights_count_the_bytes_of_every_rank_in_the_models_dtype(tiny_models, adapters):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    shapes = linear_shapes(model)
    w = read(adapters["d"], shapes, torch.bfloat16)
    want = sum(4 * (shapes[m][0] + shapes[m][1]) for m in w.modules)  # r=4: A [4, in] + B [out, 4]
    assert w.nbytes == 2 * want and len(w.modules) == 7 * model.config.num_hidden_layers
    assert all(a.dtype == b.dtype == torch.bfloat16 for a, b in w.modules.values())


def test_greedy_tokens_through_the_engine_equal_peft_generate_with_each_adapter(tiny_models, adapters):
    lm = load_model(str(tiny_models["llama"]))
    engine = Engine.from_loaded(lm, max_running=16, max_queue=16)
    strengths = {"a": 0.6, "b": 0.0, "c": 1.0, "d": 0.4, "e": 0.0}
    attach_adapters(engine, [(n, p, strengths[n]) for n, p in adapters.items()])
    prompts = [random_prompt(lm, 5 + i, seed=20 + i) for i in range(3)]
    models = [*adapters, "__base__", None]  # None: /chat's combination of a, c and d
    try:
        async def main():
            jobs = [(m, j) for m in models for j in range(len(prompts))]
            outs = await asyncio.gather(*[run(engine, prompts[j], greedy(8), adapter=m) for m, j in jobs])
            return dict(zip(jobs, outs))
        got = asyncio.run(main())
    finally:
        engine.shutdown()
    combine = [(n, s) for n, s in strengths.items() if s > 0]
    peft = peft_model(tiny_models["llama"], adapters, combine=combine)
    for (m, j), text in got.items():
        assert text == reference(lm, prompts[j], 8, adapter="combined" if m is None else m, peft=peft), (m, j)
    assert len({got[(m, 0)] for m in models}) >= 5  # the adapters really differ


@pytest.mark.parametrize("config, field", [
    ({"use_dora": True}, "use_dora"),
    ({"lora_bias": True}, "lora_bias"),
    ({"bias": "lora_only"}, "bias"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
])
def test_lora_kinds_the_batched_forward_cannot_compute_are_refused_by_name(tiny_models, tmp_path, config, field):
    path = build(tiny_models["llama"], tmp_path / "x", seed=1, **config)
    with pytest.raises(AdapterError) as e:
        read(path, linear_shapes(AutoModelForCausalLM.from_pretrained(tiny_models["llama"])), torch.float32)
    assert f"{field}=" in e.value.message and e.value.status == 400 and e.value.param == "lora_path"


def test_a_lora_on_a_module_other_than_linear_is_refused(tiny_models, tmp_path):
    path = build(tiny_models["llama"], tmp_path / "emb", seed=1, target_modules=["embed_tokens", "q_proj"])
    with pytest.raises(AdapterError) as e:
        read(path, linear_shapes(AutoModelForCausalLM.from_pretrained(tiny_models["llama"])), torch.float32)
    assert "embed_tokens" in e.value.message and "Linear modules" in e.value.message
