"""Chunked prefill, prefix reuse and the KV byte budget, with a real tiny model (no Ray, no HTTP).

Batching correctness: greedy tokens must equal plain `model.generate` one prompt at a time, however
the prompt was prefilled (in chunks between decode steps, or from another request's cached prefix).
"""
import asyncio
import random

import pytest
import torch

from serving.engine import Engine
from serving.errors import ContextLengthExceeded, Overloaded
from serving.kvbudget import PREFIX_FRACTION
from serving.loading import load_model
from serving.scheduler import SamplingParams

from .conftest import attach_adapters, peft_model


def greedy(n):
    return SamplingParams(max_tokens=n, temperature=0.0)


async def run(engine, prompt_ids, params, **kw):
    text = ""
    async for d in await engine.generate(prompt_ids, params, **kw):
        text += d.text
    return text


def random_prompt(lm, n, seed):
    rng = random.Random(seed)
    special = set(lm.tokenizer.all_special_ids)
    vocab = [i for i in range(lm.model.config.vocab_size) if i not in special]
    return [rng.choice(vocab) for _ in range(n)]


def reference(lm, ids, n, adapter=None, peft=None):
    """One prompt alone through transformers' generate: the base model, or `adapter` of `peft`, an
    independent peft model (conftest.peft_model; "__base__": its adapters disabled)."""
    import contextlib

    model = lm.model if peft is None else peft
    if peft is not None and adapter != "__base__":
        model.set_adapter(adapter)
    off = model.disable_adapter() if adapter == "__base__" else contextlib.nullcontext()
    with torch.inference_mode(), off:
        out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n, do_sample=False)
    return lm.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


@pytest.fixture(scope="module")
def llama(tiny_models):
    return load_model(str(tiny_models["llama"]))


def test_long_prompts_prefilled_in_chunks_while_others_decode_match_generate(llama):
    engine = Engine.from_loaded(llama, max_running=8, max_queue=8, prefill_chunk=16, prefix_cache=False)
    short = [random_prompt(llama, 5 + i, seed=i) for i in range(3)]
    # several chunks each; the 700-token one is decoded in a lane of its own (no padding the short rows)
    long = [random_prompt(llama, n, seed=10 + i) for i, n in enumerate((70, 700, 88))]
    chunks, lanes = [], []
    orig = engine._step

    def step(s):
        chunks.append(s.partial_tokens if s.partial else 0)
        out = orig(s)
        lanes.append(len(engine.runner.lanes))
        return out

    engine._step = step

    async def main():
        streams = [asyncio.ensure_future(run(engine, ids, greedy(24))) for ids in short]
        await asyncio.sleep(0.05)  # the short ones are decoding when the long ones arrive
        streams += [asyncio.ensure_future(run(engine, ids, greedy(10))) for ids in long]
        return await asyncio.gather(*streams)

    try:
        got = asyncio.run(main())
    finally:
        engine.shutdown()
    assert got == [reference(llama, ids, 24) for ids in short] + [reference(llama, ids, 10) for ids in long]
    assert max(chunks) <= 16 and chunks.count(16) >= 50  # the long prompts really went in chunks
    assert max(lanes) == 2


def test_a_shared_prefix_is_reused_and_gives_the_cold_output(llama):
    engine = Engine.from_loaded(llama, max_running=8, max_queue=8, prefill_chunk=32, prefix_min_tokens=24)
    system = random_prompt(llama, 60, seed=1)
    first, second = system + random_prompt(llama, 7, seed=2), system + random_prompt(llama, 11, seed=3)
    short = system[:20] + [5, 6]  # shorter than prefix_min_tokens: never served from the cache

    async def main():
        a = await run(engine, first, greedy(12))
        hits_after_first = engine.runner.prefixes.hits
        b, c = await asyncio.gather(run(engine, second, greedy(12)), run(engine, short, greedy(6)))
        again = await run(engine, first, greedy(12))  # its whole prompt but the last token is cached
        return a, b, c, again, hits_after_first

    try:
        a, b, c, again, hits_first = asyncio.run(main())
        hits = engine.runner.prefixes.hits
    finally:
        engine.shutdown()
    assert hits_first == 0 and hits == 2
    assert a == again == reference(llama, first, 12)
    assert b == reference(llama, second, 12) and c == reference(llama, short, 6)


@pytest.fixture(scope="module")
def adapted(tiny_models):
    return load_model(str(tiny_models["llama"]))


def test_a_prefix_cached_under_one_adapter_is_never_served_for_another(adapted, tiny_models, llama_adapters):
    engine = Engine.from_loaded(adapted, max_running=8, max_queue=8, prefill_chunk=16, prefix_min_tokens=24)
    attach_adapters(engine, [("alpha", llama_adapters["alpha"], 1.0), ("beta", llama_adapters["beta"], 0.5)])
    prompt = random_prompt(adapted, 50, seed=4)
    order = ["alpha", "beta", "__base__", None]  # None = /chat's strength-combined adapter

    async def main():
        cold = {a: await run(engine, prompt, greedy(10), adapter=a) for a in order}
        hits_cold = engine.runner.prefixes.hits
        warm = await asyncio.gather(*[run(engine, prompt, greedy(10), adapter=a) for a in order])
        return cold, hits_cold, dict(zip(order, warm))

    try:
        cold, hits_cold, warm = asyncio.run(main())
        hits = engine.runner.prefixes.hits
        assert hits_cold == 0 and hits == len(order)  # each adapter only ever hit its own entry
        assert warm == cold
        assert len(set(cold.values())) >= 3  # the adapters really differ on this prompt
        peft = peft_model(tiny_models["llama"], llama_adapters, combine=[("alpha", 1.0), ("beta", 0.5)])
        assert cold["alpha"] == reference(adapted, prompt, 10, adapter="alpha", peft=peft)
        assert cold["__base__"] == reference(adapted, prompt, 10, adapter="__base__", peft=peft)
        assert cold[None] == reference(adapted, prompt, 10, adapter="combined", peft=peft)
    finally:
        engine.shutdown()


def test_64_long_requests_into_a_small_kv_budget_finish_or_are_refused_cleanly(llama):
    prompt_len, max_tokens = 96, 32
    per_token = Engine.from_loaded(llama, max_running=1, max_queue=0).kv_budget.bytes_per_token
    budget = int(6 * (prompt_len + max_tokens) * per_token / (1 - PREFIX_FRACTION))  # room for 6 such rows
    seen = []
    engine = Engine.from_loaded(llama, max_running=64, max_queue=24, kv_cache_bytes=budget,
                                on_step=lambda st: seen.append((st.running, engine.runner.kv_bytes())))
    prompts = [random_prompt(llama, prompt_len, seed=100 + i) for i in range(64)]

    async def one(ids):
        try:
            return len(await run(engine, ids, SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)))
        except Overloaded as e:
            return e

    async def main():
        return await asyncio.gather(*[one(ids) for ids in prompts])

    try:
        results = asyncio.run(main())
        assert engine.stats().running == 0 and engine.stats().queued == 0
    finally:
        engine.shutdown()
    finished = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(finished) + len(refused) == 64
    assert len(finished) >= 30 and refused  # 6 running + 24 queued at once, the rest got a 429
    assert all(e.status == 429 and e.headers()["Retry-After"] for e in refused)
    assert all(n > 0 for n in finished)
    assert max(r for r, _ in seen) <= 6  # admission held the batch to what the budget covers
    assert max(b for _, b in seen) <= budget - engine.kv_budget.prefix_bytes  # the cache never outgrew it


def test_a_request_larger_than_the_whole_kv_budget_is_a_400_naming_it(llama):
    per_token = Engine.from_loaded(llama, max_running=1, max_queue=0).kv_budget.bytes_per_token
    engine = Engine.from_loaded(llama, kv_cache_bytes=200 * per_token)
    try:
        with pytest.raises(ContextLengthExceeded) as e:
            engine.check_length(150, 100, "prompt")
        assert e.value.status == 400 and "KV cache budget" in str(e.value)
        assert engine.check_length(100, None, "prompt") == engine.kv_tokens - 100
    finally:
        engine.shutdown()


def test_a_prompt_prefilled_by_chunks_never_holds_more_kv_than_its_own_length(llama):
    # the KV budget reserves a partial prompt's prompt + max_tokens; its own cache doubling past the
    # prompt (a 160-position buffer for a 96-token prompt) once put the batch over the budget
    capacities = []

    def seen(step):
        if engine.runner.partial is not None:
            capacities.append(max(layer.capacity for layer in engine.runner.partial[1].layers))

    engine = Engine.from_loaded(llama, max_running=4, max_queue=4, prefill_chunk=16, prefix_cache=False,
                                on_step=seen)
    long_prompt = random_prompt(llama, 96, seed=7)

    async def main():
        first = asyncio.ensure_future(run(engine, random_prompt(llama, 6, seed=8), greedy(40)))
        await asyncio.sleep(0.05)
        return await asyncio.gather(first, run(engine, long_prompt, greedy(4)))

    try:
        _, text = asyncio.run(main())
    finally:
        engine.shutdown()
    assert len(capacities) >= 3  # it really was prefilled in several chunks
    assert max(capacities) <= len(long_prompt)
    assert text == reference(llama, long_prompt, 4)
