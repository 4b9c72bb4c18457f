"""Fine-tuning throughput: our trainer vs a KAITO-style baseline, side by side in one run.

  ours      tuning's pipeline: length-grouped sampler + pad-to-longest-in-batch (multiple of 8)
  baseline  what KAITO's fine_tuning.py does: a plain transformers Trainer with peft, random
            batches, DataCollatorForLanguageModeling(mlm=False) padding to the batch's longest

Both train --steps batches drawn from the same examples (lengths spread uniformly over
--min-len..--max-len tokens) with the same model, LoRA config and batch size, each in its own
process (clean peak memory); arms alternate --repeats times and each keeps its best run. The
figure of merit is useful (non-padding) tokens per second. Peak memory: max RSS on CPU,
torch.cuda.max_memory_allocated on GPU.

  python bench/tuning/run.py --threads 1          # CPU, llama-architecture ~20M-parameter model
  (--threads 1 on a shared 2-core machine: spinning OpenMP threads make 2-thread timings noise)
  python bench/tuning/run.py --device cuda --phi3-qlora   # also QLoRA on a random phi-3-mini-sized model
Writes bench/results/tuning.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

WORDS = ("the model learns from data tokens every step while the adapter stays small and the base weights "
         "remain frozen in memory kubernetes schedules pods onto nodes with gpus and a job trains lora").split()

# transformers' Phi3Config for microsoft/Phi-3-mini-4k-instruct (weights random: throughput only).
PHI3_MINI = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096)


def make_dataset(path: Path, tokenizer, n: int, min_len: int, max_len: int, seed: int = 0) -> dict:
    """Plain-text rows whose token counts spread uniformly over [min_len, max_len]."""
    rng = random.Random(seed)
    lengths = []
    with open(path, "w") as fh:
        for _ in range(n):
            target = rng.randint(min_len, max_len)
            words = [rng.choice(WORDS) for _ in range(target)]
            ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][: target - 1]
            text = tokenizer.decode(ids)
            fh.write(json.dumps({"text": text}) + "\n")
            lengths.append(len(ids) + 1)
    return {"examples": n, "min_tokens": min(lengths), "mean_tokens": round(sum(lengths) / n, 1),
            "max_tokens": max(lengths)}


def training_doc(method: str, device: str, batch: int, max_len: int, steps: int) -> dict:
    import presets
    doc = presets.default_training_config(method)
    body = doc["training_config"]
    body["ModelConfig"]["torch_dtype"] = "bfloat16" if device == "cuda" else "float32"
    if method == "qlora" and device != "cuda":
        body["QuantizationConfig"]["bnb_4bit_compute_dtype"] = "float32"
    body["LoraConfig"].update(lora_alpha=16)
    body["TrainingArguments"].update(per_device_train_batch_size=batch, max_steps=steps, save_strategy="no",
                                     learning_rate=1e-4, logging_steps=1000, seed=0,
                                     bf16=device == "cuda", use_cpu=device != "cuda")
    body["DatasetConfig"].update(train_test_split=1, max_seq_length=max_len)
    return doc


class CountingCollator:
    """Wraps a collator to count the tokens the model actually computes on (padding included)."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def __call__(self, features):
        batch = self.inner(features)
        self.batches.append((int(batch["attention_mask"].sum()), int(batch["input_ids"].numel())))
        return batch

    def totals(self, consumed: int) -> tuple[int, int]:
        """(useful, computed) over the batches training consumed (the loader prefetches one more)."""
        done = self.batches[:consumed]
        return sum(u for u, _ in done), sum(c for _, c in done)


def run_arm(arm: str, method: str, model_dir: Path, data_path: Path, device: str, batch: int, max_len: int,
            steps: int) -> dict:
    """One measurement, in this (fresh) process."""
    import torch
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from tuning.batching import PadToLongest, TokenizedDataset
    from tuning.config import parse_training_config
    from tuning.datafiles import read_records
    from tuning.examples import columns_of, detect_layout, encode_records
    from tuning.model import load_peft_model, load_tokenizer
    from tuning.training import TRAINING_DEFAULTS, TuningTrainer, training_arguments

    torch.manual_seed(0)
    cfg = parse_training_config(training_doc(method, device, batch, max_len, steps), method)
    tokenizer = load_tokenizer(model_dir, cfg)
    records = read_records(data_path)
    examples = encode_records(records, detect_layout(columns_of(records), cfg.dataset), tokenizer, max_len)
    model = load_peft_model(model_dir, cfg, gradient_checkpointing=False)
    if device == "cuda":
        model = model.cuda() if not cfg.quantized else model
        torch.cuda.reset_peak_memory_stats()
    out = Path(tempfile.mkdtemp(prefix=f"bench-{arm}-"))
    if arm == "ours":
        collator = CountingCollator(PadToLongest(tokenizer.pad_token_id, cfg.collator.pad_to_multiple_of))
        args = training_arguments(cfg, out)
        trainer = TuningTrainer(model=model, args=args, train_dataset=TokenizedDataset(examples),
                                data_collator=collator)
    else:
        collator = CountingCollator(DataCollatorForLanguageModeling(tokenizer, mlm=False))
        args = TrainingArguments(**{**cfg.training, "output_dir": str(out), "report_to": "none",
                                    "include_num_input_tokens_seen": "non_padding", "disable_tqdm": True,
                                    "dataloader_pin_memory": device == "cuda"})
        trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": e.input_ids} for e in examples],
                          data_collator=collator)
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = trainer.train()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    seconds = float(result.metrics["train_runtime"])
    useful, computed = collator.totals(trainer.state.global_step * args.gradient_accumulation_steps)
    assert useful == int(trainer.state.num_input_tokens_seen), (useful, trainer.state.num_input_tokens_seen)
    if device == "cuda":
        peak = int(torch.cuda.max_memory_allocated())
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    import shutil
    shutil.rmtree(out, ignore_errors=True)
    return {"arm": arm, "method": method, "steps": trainer.state.global_step, "seconds": round(seconds, 3),
            "useful_tokens": useful, "computed_tokens": computed,
            "padding_efficiency": round(useful / max(computed, 1), 3),
            "useful_tokens_per_s": round(useful / seconds, 1),
            "useful_tokens_per_cpu_s": round(useful / max(cpu_seconds, 1e-9), 1), "cpu_seconds": round(cpu_seconds, 2),
            "peak_memory_mib": round(peak / 2**20, 1),
            "peak_memory_kind": "cuda_max_allocated" if device == "cuda" else "max_rss",
            "train_loss": round(float(result.training_loss), 4), "sampler": TRAINING_DEFAULTS["train_sampling_strategy"]
            if arm == "ours" else "random"}


def build_model(kind: str, target: Path, args) -> dict:
    import torch
    from tinymodel import build_tiny_model
    if kind == "llama":
        build_tiny_model(target, architecture="llama", hidden_size=args.hidden, intermediate_size=args.intermediate,
                         num_layers=args.layers, num_heads=args.heads, num_kv_heads=args.heads,
                         context_length=max(1024, args.max_len))
    else:  # phi-3-mini's shape, random weights, the tiny tokenizer (ids stay below its vocabulary)
        from transformers import AutoModelForCausalLM, AutoTokenizer, Phi3Config
        small = build_tiny_model(target / "tok", architecture="phi3")
        tokenizer = AutoTokenizer.from_pretrained(small)
        config = Phi3Config(**PHI3_MINI, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, dtype="bfloat16")
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        del model
    config = json.loads((target / "config.json").read_text())
    import math

    from safetensors import safe_open
    params = 0
    for shard in target.glob("*.safetensors"):
        with safe_open(shard, "pt") as fh:
            params += sum(math.prod(fh.get_slice(key).get_shape()) for key in fh.keys())
    return {"architecture": config["architectures"][0], "parameters": params, "hidden_size": config["hidden_size"],
            "layers": config["num_hidden_layers"], "vocab_size": config["vocab_size"]}


def spawn(arm: str, method: str, model_dir: Path, data: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--_arm", arm, "--_method", method, "--_model", str(model_dir),
           "--_data", str(data), "--device", args.device, "--batch-size", str(args.batch_size),
           "--max-len", str(args.max_len), "--steps", str(args.steps)] + (["--threads", str(args.threads)] if args.threads else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(f"arm {arm}/{method} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(label: str, method: str, model_dir: Path, data: Path, args) -> dict:
    """Alternate the arms `--repeats` times and keep each arm's best run (the least disturbed one)."""
    runs = {"baseline": [], "ours": []}
    for _ in range(args.repeats):
        for arm in runs:
            runs[arm].append(spawn(arm, method, model_dir, data, args))
            print(f"  {label} {arm}: {runs[arm][-1]['useful_tokens_per_s']} useful tokens/s", file=sys.stderr)
    arms = {arm: max(rows, key=lambda r: r["useful_tokens_per_s"]) for arm, rows in runs.items()}
    for arm, rows in runs.items():
        arms[arm]["all_useful_tokens_per_s"] = [r["useful_tokens_per_s"] for r in rows]
    base, ours = arms["baseline"], arms["ours"]
    return {"arms": arms, "ratios": {
        "useful_tokens_per_s": round(ours["useful_tokens_per_s"] / base["useful_tokens_per_s"], 2),
        "useful_tokens_per_cpu_s": round(ours["useful_tokens_per_cpu_s"] / base["useful_tokens_per_cpu_s"], 2),
        "peak_memory": round(ours["peak_memory_mib"] / base["peak_memory_mib"], 2),
        "computed_tokens": round(ours["computed_tokens"] / base["computed_tokens"], 2)}}


def print_table(results: dict) -> None:
    header = f"{'case':<22}{'arm':<10}{'useful tok/s':>13}{'tok/cpu-s':>10}{'pad eff':>9}{'computed':>10}{'peak MiB':>10}{'loss':>8}"
    print(header)
    print("-" * len(header))
    for label, case in results["cases"].items():
        for arm in ("baseline", "ours"):
            row = case["arms"][arm]
            print(f"{label:<22}{arm:<10}{row['useful_tokens_per_s']:>13.1f}{row['useful_tokens_per_cpu_s']:>10.1f}"
                  f"{row['padding_efficiency']:>9.2f}"
                  f"{row['computed_tokens']:>10}{row['peak_memory_mib']:>10.0f}{row['train_loss']:>8.3f}")
        r = case["ratios"]
        print(f"{label:<22}{'ratio':<10}{r['useful_tokens_per_s']:>12.2f}x{r['useful_tokens_per_cpu_s']:>9.2f}x"
              f"{'':>9}{r['computed_tokens']:>9.2f}x"
              f"{r['peak_memory']:>9.2f}x")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--examples", type=int, default=1024, help="dataset size (each arm samples --steps batches)")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per arm")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--min-len", type=int, default=16)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--intermediate", type=int, default=1408)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2, help="runs per arm, alternating; the best is kept")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per arm (default: torch's)")
    p.add_argument("--phi3-qlora", action="store_true", help="also QLoRA on a random phi-3-mini-sized model (GPU)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "tuning.json"))
    for hidden in ("--_arm", "--_method", "--_model", "--_data"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    if args._arm:  # child process: one measurement, one JSON line on stdout
        import logging
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(run_arm(args._arm, args._method, Path(args._model), Path(args._data), args.device,
                                 args.batch_size, args.max_len, args.steps)))
        return 0

    if args.phi3_qlora and args.device != "cuda":
        p.error("--phi3-qlora needs --device cuda (a 3.8B-parameter model)")
    started = time.time()
    results = {"command": "python " + " ".join([str(Path(__file__).relative_to(REPO)), *(argv or sys.argv[1:])]),
               "device": args.device, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "cases": {}}
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as tmp:
        tmp = Path(tmp)
        from transformers import AutoTokenizer
        results["model"] = build_model("llama", tmp / "llama", args)
        tokenizer = AutoTokenizer.from_pretrained(tmp / "llama")
        results["dataset"] = make_dataset(tmp / "data.jsonl", tokenizer, args.examples, args.min_len, args.max_len)
        results["batch_size"] = args.batch_size
        print(f"model {results['model']}, dataset {results['dataset']}", file=sys.stderr)
        size = f"{results['model']['parameters'] / 1e6:.0f}M"
        results["cases"][f"lora-llama-{size}"] = compare("lora-llama", "lora", tmp / "llama", tmp / "data.jsonl", args)
        if args.device == "cuda":
            results["cases"][f"qlora-llama-{size}"] = compare("qlora-llama", "qlora", tmp / "llama", tmp / "data.jsonl", args)
        if args.phi3_qlora:
            results["phi3_model"] = build_model("phi3", tmp / "phi3", args)
            results["cases"]["qlora-phi-3-mini"] = compare("qlora-phi3", "qlora", tmp / "phi3", tmp / "data.jsonl", args)
    results["wall_seconds"] = round(time.time() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
