"""The model forward alone, side by side in one run (issue 14's mixed-adapter cost, without the server):
one decode step of 16 rows spread over 8 LoRA adapters, through serving/lora.py's batched forward and
through peft's mixed batch (`adapter_names=`), against the same step on the base model. Rounds are
interleaved; the medians and their ratios are printed.

    .venv/bin/python bench/adapters/forward.py --threads 1 --rounds 7
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("serving_bench", ROOT / "bench" / "serving" / "run.py")
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)

MODELS = {"tiny": {}, "27M": sb.MODEL_SHAPE}
ROWS, ADAPTERS, PROMPT_LEN, STEPS = 16, 8, 32, 10


def bench_model(label: str, shape: dict, work: Path, rounds: int) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, DynamicCache

    from serving.lora import Slots, linear_shapes, read
    from tinymodel import build_adapter, build_tiny_model

    path = build_tiny_model(work / label / "model", architecture="llama", seed=0, **shape)
    dirs = [build_adapter(path, work / label / f"adapter{i}", seed=i + 1) for i in range(ADAPTERS)]
    keys = [f"a{i}" for i in range(ADAPTERS)]
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    slots = Slots(SimpleNamespace(model=model, adapter_names=None, lora=None))
    for k, d in zip(keys, dirs):
        slots.attach(k, read(d, linear_shapes(model), torch.float32))
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path), str(dirs[0]), adapter_name=keys[0])
    for k, d in zip(keys[1:], dirs[1:]):
        peft.load_adapter(str(d), adapter_name=k)
    peft.eval()
    rows = [keys[i % ADAPTERS] for i in range(ROWS)]
    ids = torch.randint(5, model.config.vocab_size - 5, (ROWS, PROMPT_LEN), generator=torch.Generator().manual_seed(0))
    arms = {"base": (model, {}, contextlib.nullcontext), "batched": (model, {}, lambda: slots.rows(rows)),
            "peft": (peft, {"adapter_names": rows}, contextlib.nullcontext)}

    def decode_step_s(arm: str) -> float:
        m, kw, ctx = arms[arm]
        with torch.inference_mode():
            cache = DynamicCache()
            with ctx():
                m(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1, **kw)
            t0 = time.perf_counter()
            for _ in range(STEPS):
                with ctx():
                    m(input_ids=ids[:, :1], past_key_values=cache, use_cache=True, logits_to_keep=1, **kw)
            return (time.perf_counter() - t0) / STEPS

    times: dict[str, list[float]] = {a: [] for a in arms}
    for _ in range(rounds):
        for a in arms:
            times[a].append(decode_step_s(a))
    med = {a: statistics.median(t) for a, t in times.items()}
    return {"step_ms": {a: 1e3 * t for a, t in med.items()},
            "batched_vs_base": med["batched"] / med["base"], "peft_vs_base": med["peft"] / med["base"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="kaito-bench-lora-forward-"))
    for label in a.models:
        r = bench_model(label, MODELS[label], work, a.rounds)
        ms = r["step_ms"]
        print(f"{label}: decode step of {ROWS} rows over {ADAPTERS} adapters, time vs base ({ms['base']:.1f} ms): "
              f"batched {r['batched_vs_base']:.2f}x ({ms['batched']:.1f} ms), peft {r['peft_vs_base']:.2f}x "
              f"({ms['peft']:.1f} ms)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
