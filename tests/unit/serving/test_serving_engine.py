"""The engine with a real (tiny, random) transformers model and peft adapters; no Ray, no HTTP."""
import asyncio

import pytest

from serving.engine import Engine
from serving.errors import ContextLengthExceeded, Overloaded
from serving.loading import load_model
from serving.scheduler import SamplingParams

from .conftest import attach_adapters

PROMPTS = ["Hello there", "The quick brown fox jumps over", "def add(a, b):", "x",
           "Kubernetes schedules pods onto nodes; a Deployment", "What is the capital", "Numbers: 0 1 2 3",
           "User: Explain LoRA."]


def greedy(n):
    return SamplingParams(max_tokens=n, temperature=0.0)


async def run(engine, prompt_ids, params, **kw):
    out = {}
    async for d in await engine.generate(prompt_ids, params, **kw):
        out[d.index] = out.get(d.index, "") + d.text
    return [out[i] for i in sorted(out)]


@pytest.fixture(scope="module", params=["phi3", "llama"])
def base(request, tiny_models):
    lm = load_model(str(tiny_models[request.param]))
    engine = Engine.from_loaded(lm, max_running=8, max_queue=8)
    yield lm, engine
    engine.shutdown()


def test_concurrent_greedy_equals_one_at_a_time_and_transformers_generate(base):
    lm, engine = base
    tok = lm.tokenizer
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    lengths = [6 + 3 * i for i in range(len(PROMPTS))]  # different lengths: sequences leave at different steps

    async def main():
        alone = [(await run(engine, i, greedy(n)))[0] for i, n in zip(ids, lengths)]
        together = await asyncio.gather(*[run(engine, i, greedy(n)) for i, n in zip(ids, lengths)])
        return alone, [t[0] for t in together]

    alone, together = asyncio.run(main())
    assert together == alone
    import torch
    for i, n, got in zip(ids, lengths, alone):
        out = lm.model.generate(torch.tensor([i]), max_new_tokens=n, do_sample=False)
        assert got == tok.decode(out[0, len(i):], skip_special_tokens=True)


def test_seeded_sampling_is_reproducible_and_choices_differ(base):
    lm, engine = base
    ids = lm.tokenizer("Hello")["input_ids"]
    p = SamplingParams(max_tokens=12, temperature=1.0, top_k=50, top_p=0.95, seed=7, repetition_penalty=1.2)
    a = asyncio.run(run(engine, ids, p, n=2))
    b = asyncio.run(run(engine, ids, p, n=2))
    assert a == b and a[0] != a[1]


def test_prompt_longer_than_context_is_refused_before_work(base):
    _, engine = base
    with pytest.raises(ContextLengthExceeded) as e:
        engine.check_length(engine.context_length, None, "prompt")
    assert e.value.status == 400 and e.value.param == "prompt"
    assert engine.check_length(10, None, "prompt") == engine.context_length - 10


def test_leaving_the_stream_early_frees_the_slot(tiny_models):
    lm = load_model(str(tiny_models["llama"]))
    engine = Engine.from_loaded(lm, max_running=1, max_queue=0)
    ids = lm.tokenizer("Hello")["input_ids"]
    endless = SamplingParams(max_tokens=1500, temperature=0.0, ignore_eos=True)

    async def main():
        stream = await engine.generate(ids, endless)
        await stream.__anext__()
        with pytest.raises(Overloaded):  # the only slot is busy and there is no queue
            await engine.generate(ids, greedy(3))
        await stream.aclose()  # what a client disconnect does
        for _ in range(100):
            if engine.stats().running == 0:
                break
            await asyncio.sleep(0.02)
        return await run(engine, ids, greedy(3))

    try:
        assert len(asyncio.run(main())) == 1
        assert engine.stats().running == 0 and engine.stats().queued == 0
    finally:
        engine.shutdown()


@pytest.fixture(scope="module")
def adapted(tiny_models, llama_adapters):
    lm = load_model(str(tiny_models["llama"]))
    engine = Engine.from_loaded(lm, max_running=16, max_queue=16)
    attach_adapters(engine, [("alpha", llama_adapters["alpha"], 1.0), ("beta", llama_adapters["beta"], 0.0)])
    yield lm, engine
    engine.shutdown()


def test_mixed_adapters_in_one_batch_match_each_adapter_alone(adapted):
    lm, engine = adapted
    tok = lm.tokenizer
    names = ["__base__", "alpha", "beta", None]  # None = the /chat default (combined by strength)
    ids = [tok(p)["input_ids"] for p in PROMPTS[:4]]

    async def main():
        alone = {(a, j): (await run(engine, i, greedy(10), adapter=a))[0] for a in names for j, i in enumerate(ids)}
        jobs = [(a, j) for a in names for j in range(len(ids))]
        together = await asyncio.gather(*[run(engine, ids[j], greedy(10), adapter=a) for a, j in jobs])
        return alone, dict(zip(jobs, (t[0] for t in together)))

    alone, together = asyncio.run(main())
    assert together == alone
    for j in range(len(ids)):
        assert alone[("alpha", j)] != alone[("__base__", j)]  # an adapter changes the output
        assert alone[("beta", j)] != alone[("__base__", j)]
        # combined with strengths alpha=1, beta=0 is exactly alpha
        assert alone[(None, j)] == alone[("alpha", j)]


def test_strength_zero_everywhere_gives_the_base_model(tiny_models, llama_adapters):
    lm = load_model(str(tiny_models["llama"]))
    engine = Engine.from_loaded(lm)
    attach_adapters(engine, [("alpha", llama_adapters["alpha"], 0.0)])
    ids = lm.tokenizer("The quick brown fox")["input_ids"]
    try:
        combined = asyncio.run(run(engine, ids, greedy(12)))
        base = asyncio.run(run(engine, ids, greedy(12), adapter="__base__"))
        assert combined == base
    finally:
        engine.shutdown()


def test_batched_stream_holds_deltas_for_the_interval_but_never_the_first_or_last(base):
    lm, engine = base
    ids = lm.tokenizer("Hello there")["input_ids"]
    p = SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True)

    async def main():
        batches = [b async for b in await engine.generate(ids, p, batched=True, interval_s=5.0)]
        return batches, await run(engine, ids, p)

    t0 = __import__("time").monotonic()
    batches, plain = asyncio.run(main())
    assert __import__("time").monotonic() - t0 < 5.0  # the final delta ends the wait at once
    assert len(batches[0]) == 1 and len(batches) == 2  # first token alone, the rest in one write
    assert "".join(d.text for b in batches for d in b) == plain[0]
    assert batches[-1][-1].finish_reason == "length"
