"""Our engine against transformers' own continuous batching (`generate_batch`: PagedAttentionCache
with `paged|sdpa` attention), side by side in one run, on the serving bench's model and prompts.

Both get the same c prompts of the same token ids, greedy, a fixed output length, the same torch
threads, in this process, no HTTP. transformers' manager sizes its paged cache from memory when
not told (on a CPU that took 13 GB here for 16 short requests, and a third of the time went to the
kernel faulting it in), so it gets a cache sized for the run: `--page-size`, and blocks for every
request's prompt + output. Rounds alternate between the two; the ratio is the median per round.
The greedy tokens of the two are compared as well (the first request's, and how many agree).

    .venv/bin/python bench/serving/paged.py --concurrency 16 --rounds 3 --threads 1

Writes bench/results/serving-paged.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.serving.run import MODEL_SHAPE  # noqa: E402 - one model shape for every serving bench

RESULTS = ROOT / "bench" / "results" / "serving-paged.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--input-len", type=int, default=32)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--page-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    from serving.engine import Engine
    from serving.loading import load_model
    from serving.scheduler import SamplingParams
    from tinymodel import build_tiny_model

    torch.set_num_threads(a.threads)
    model_dir = build_tiny_model(Path(tempfile.mkdtemp(prefix="kaito-bench-")) / "model", architecture="llama",
                                 seed=0, **MODEL_SHAPE)
    lm = load_model(str(model_dir))
    special = set(lm.tokenizer.all_special_ids)
    vocab = [i for i in range(lm.model.config.vocab_size) if i not in special]
    rng = random.Random(a.seed)
    prompts = [[rng.choice(vocab) for _ in range(a.input_len)] for _ in range(a.concurrency)]

    engine = Engine.from_loaded(lm, max_running=a.concurrency, max_queue=a.concurrency)
    params = SamplingParams(max_tokens=a.output_len, temperature=0.0, ignore_eos=True)

    def ours() -> float:
        async def one(ids):
            n = 0
            async for d in await engine.generate(ids, params):
                n = d.completion_tokens
            return n

        async def run():
            return await asyncio.gather(*[one(ids) for ids in prompts])
        start = time.perf_counter()
        tokens = sum(asyncio.run(run()))
        return tokens / (time.perf_counter() - start)

    paged_model = AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="paged|sdpa").eval()
    blocks = a.concurrency * math.ceil((a.input_len + a.output_len) / a.page_size) + 8
    cb = ContinuousBatchingConfig(page_size=a.page_size, num_blocks=blocks,
                                  max_batch_tokens=a.concurrency * a.input_len, max_requests_per_batch=a.concurrency)
    gen = GenerationConfig(max_new_tokens=a.output_len, do_sample=False, eos_token_id=-1,
                           pad_token_id=lm.tokenizer.pad_token_id or 0)

    def paged() -> tuple[float, list[list[int]]]:
        start = time.perf_counter()
        # its manager writes its static tensors in place: it cannot run under inference_mode
        out = paged_model.generate_batch(prompts, generation_config=gen, continuous_batching_config=cb,
                                         warmup=False)
        dt = time.perf_counter() - start
        ordered = [out[k].generated_tokens for k in sorted(out, key=lambda k: int(k.rsplit("_", 1)[-1]))]
        return sum(len(t) for t in ordered) / dt, ordered

    ours()  # warm-up both
    paged()
    rounds = []
    for r in range(a.rounds):
        e = ours()
        g, toks = paged()
        rounds.append({"engine_tok_s": e, "paged_tok_s": g, "ratio": e / g, "load": os.getloadavg()[0]})
        print(f"   c={a.concurrency} round {r}: engine {e:7.1f} tok/s  generate_batch (paged) {g:7.1f} tok/s  "
              f"{e / g:5.2f}x  (load {os.getloadavg()[0]:.1f})", flush=True)
    engine.shutdown()

    with torch.inference_mode():  # greedy agreement: the paged tokens against plain generate, one prompt alone
        ref = lm.model.generate(input_ids=torch.tensor([prompts[0]]), attention_mask=torch.ones(1, a.input_len,
                                dtype=torch.long), max_new_tokens=a.output_len, min_new_tokens=a.output_len,
                                do_sample=False)[0, a.input_len:].tolist()
    res = {"concurrency": a.concurrency, "input_len": a.input_len, "output_len": a.output_len,
           "threads": a.threads, "page_size": a.page_size, "num_blocks": blocks, "rounds": rounds,
           "median_ratio": statistics.median(x["ratio"] for x in rounds),
           "paged_first_request_equals_generate": list(toks[0]) == ref,
           "command": " ".join(["bench/serving/paged.py", *sys.argv[1:]])}
    print(f"engine / generate_batch (paged): median {res['median_ratio']:.2f}x over {a.rounds} rounds; "
          f"paged greedy tokens equal generate's: {res['paged_first_request_equals_generate']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
