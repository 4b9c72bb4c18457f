"""Static-shape decode under torch.compile (the GPU path's `compile_decode`), run on the CPU.

torch.compile traces the decode step with dynamo and functionalizes it with AOTAutograd
(`aot_eager`: the same graph capture inductor compiles, without its minutes of C++ compiling), so
these tests check what the GPU path relies on: in-place KV writes at a tensor position, attention
over the whole buffer behind a 4-D mask, joins, leaves and lanes of different widths, and greedy
tokens equal to plain `model.generate` one prompt at a time.
"""
import asyncio

import pytest
import torch

from serving.engine import Engine
from serving.kvcache import growable_cache
from serving.loading import load_model
from tests.unit.serving.test_serving_engine_memory import greedy, random_prompt, reference, run

AOT = {"backend": "aot_eager"}


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_compiled_static_decode_matches_generate_through_joins_leaves_and_lanes(tiny_models, arch):
    lm = load_model(str(tiny_models[arch]))
    engine = Engine.from_loaded(lm, max_running=8, max_queue=8, prefill_chunk=64, prefix_cache=False,
                                compile_decode=True, compile_options=AOT)
    assert engine.runner.static_decode
    short = [random_prompt(lm, 4 + 3 * i, seed=i) for i in range(4)]
    long = random_prompt(lm, 300, seed=9)  # a lane of its own, joined by chunks while the others decode
    lengths = [5, 9, 14, 20]  # rows leave at different steps

    async def main():
        streams = [asyncio.ensure_future(run(engine, ids, greedy(n))) for ids, n in zip(short, lengths)]
        await asyncio.sleep(0.05)
        streams.append(asyncio.ensure_future(run(engine, long, greedy(8))))
        return await asyncio.gather(*streams)

    try:
        got = asyncio.run(main())
        lanes = len(engine.runner.lanes)
    finally:
        engine.shutdown()
    assert got == [reference(lm, ids, n) for ids, n in zip(short, lengths)] + [reference(lm, long, 8)]
    assert lanes == 0  # everyone left; nothing held


def test_adapters_are_refused_while_compile_decode_is_on_and_the_base_keeps_serving(tiny_models, llama_adapters):
    # the per-row adapter selection runs outside the captured decode step
    from serving.adapters import AdapterRegistry

    lm = load_model(str(tiny_models["llama"]))
    engine = Engine.from_loaded(lm, max_running=4, max_queue=4, compile_decode=True, compile_options=AOT)
    try:
        registry = AdapterRegistry(engine, base_name="base")
        done = registry.submit(registry.apply, [{"name": "alpha", "source": str(llama_adapters["alpha"])}]).result()
        assert done["alpha"].startswith("failed: ") and "compile_decode" in done["alpha"], done
        assert engine.runner.static_decode and engine.runner.adapter_names is None
        ids = random_prompt(lm, 6, seed=3)
        assert asyncio.run(run(engine, ids, greedy(6))) == reference(lm, ids, 6)
    finally:
        engine.shutdown()


def test_static_decode_cache_zeroes_spare_capacity_and_writes_at_the_given_column():
    # masked positions get zero attention weight, but 0 x NaN from uninitialized memory is NaN
    cache = growable_cache(static_decode=True)
    k = torch.randn(2, 1, 3, 4)
    cache.update(k, k.clone(), 0)
    layer = cache.layers[0]
    layer.reserve(1)
    assert layer._k.shape[-2] > 3 and torch.count_nonzero(layer._k[:, :, 3:]) == 0
    new = torch.ones(2, 1, 1, 4)
    layer.write_at = torch.tensor([3])
    keys, _ = layer.update(new, new, 0)
    assert keys.shape == layer._k.shape  # the whole buffer, for attention behind the mask
    assert torch.equal(keys[:, :, :3], k) and torch.equal(keys[:, :, 3:4], new)
    assert torch.count_nonzero(keys[:, :, 4:]) == 0
