"""Serving benchmark: one OpenAI-compatible streaming load generator against three servers, in one run.

  (a) ray      our app on Ray Serve (serving.app:build, embedded local Ray)
  (b) inproc   the same engine in-process without Ray (uvicorn around the same FastAPI app)
  (c) baseline KAITO-style: one transformers generate() at a time behind a lock (baseline_server.py)
  (d) generate plain `model.generate` in this process on a static batch of c prompts of the same
               shape (no HTTP): at c=1 the batch-1 anchor, at c=16/64 the static-batching anchor

By default every target runs as shipped: our servers with their default threads (`kaito up`'s
defaults), the baselines with every core of this machine; `--threads N` pins all of them to N, and
`NAME@N` pins one target (`--targets inproc@1 inproc@2`). `NAME+key=value` sets a Serve argument of
one of our servers, `NAME+KEY=value` an environment variable of its processes (`--targets ray
ray+stream_interval_ms=100 ray+RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0`); Ray targets are
applications of one Ray instance. Every HTTP row also gives the server side's CPU time per output
token by part (replica, proxy, rest of Ray; or the in-process server), which a shared machine's
load moves far less than throughput. On a shared machine use `--rounds R`:
every target is up at once and each level runs R rounds alternating between targets; the table
gives the median of the per-round ratios (each round's load average is in the JSON).

All three serve the same random Llama (~27M parameters: hidden 512, 8 layers) built with
tinymodel, so compute matters on a CPU. Prompts are random token strings from a fixed seed; every
request streams (stream_options.include_usage) with ignore_eos so output lengths are fixed.

    .venv/bin/python bench/serving/run.py            # full sweep: concurrency 1, 4, 16, 64
    .venv/bin/python bench/serving/run.py --quick    # smoke test (a few seconds per target)
    .venv/bin/python bench/serving/run.py --scenario long-join    # chunked prefill on/off
    .venv/bin/python bench/serving/run.py --scenario prefix       # shared 1,000-token prefix, cold vs warm
    .venv/bin/python bench/serving/run.py --device cuda   # GPU: batch-1 decode MBU and concurrency 64,
                                                          # phi-3-mini-shaped random model in bf16

Writes bench/results/serving.json.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "serving.json"
MODEL_SHAPE = dict(hidden_size=512, intermediate_size=1408, num_layers=8, num_heads=8, num_kv_heads=8,
                   context_length=2048)


# -- load generator ---------------------------------------------------------------------------------

async def one_request(client, url: str, model: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", url, json=body) as r:
        if r.status_code != 200:
            return {"error": r.status_code}
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if obj.get("choices") and obj["choices"][0].get("text") and first is None:
                first = time.perf_counter()
            if obj.get("usage"):
                tokens = obj["usage"]["completion_tokens"]
    end = time.perf_counter()
    first = first or end
    return {"ttft": first - start, "latency": end - start, "tokens": tokens,
            "tpot": (end - first) / (tokens - 1) if tokens > 1 else 0.0}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


async def sweep_level(base: str, model: str, prompts: list[str], concurrency: int, n: int, max_tokens: int) -> dict:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        async def run(i):
            async with sem:
                return await one_request(client, "/v1/completions", model, prompts[i % len(prompts)], max_tokens)

        start = time.perf_counter()
        results = await asyncio.gather(*[run(i) for i in range(n)])
        duration = time.perf_counter() - start
    ok = [r for r in results if "error" not in r]
    return {
        "concurrency": concurrency, "requests": n, "errors": n - len(ok), "duration_s": duration,
        "output_tokens_per_s": sum(r["tokens"] for r in ok) / duration,
        "ttft_p50_ms": 1e3 * pct([r["ttft"] for r in ok], 50), "ttft_p99_ms": 1e3 * pct([r["ttft"] for r in ok], 99),
        "tpot_p50_ms": 1e3 * pct([r["tpot"] for r in ok], 50),
        "latency_p50_ms": 1e3 * pct([r["latency"] for r in ok], 50),
        "latency_p99_ms": 1e3 * pct([r["latency"] for r in ok], 99),
    }


# -- targets ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base} did not become healthy")


class Subprocess:
    def __init__(self, cmd: list[str], env: dict[str, str] | None = None):
        self.cmd, self.env = cmd, env or {}

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **self.env})
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RayServe:
    """One embedded Ray + Serve for every ray target of a run: each target is its own application
    under its own route prefix behind the one proxy (an idle application costs next to nothing).
    Ray gets a logical CPU per application on top of the machine's, so each replica's
    `cpus_per_replica` fits (torch threads follow the real cores: serving.service.default_threads)."""

    def __init__(self, apps: int):
        self.apps, self.port = apps, None

    def __enter__(self):
        from serving import ray_local

        self.port = free_port()
        ray_local.start(port=self.port, num_cpus=(os.cpu_count() or 2) + self.apps)
        return self

    def __exit__(self, *exc):
        from serving import ray_local

        self.port = None
        ray_local.stop()


class RayTarget:
    def __init__(self, ray: RayServe, name: str, args: dict, env: dict[str, str]):
        self.ray, self.name, self.args, self.env = ray, name, args, env

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ray.port}/{self.name}"

    def __enter__(self):
        from ray import serve

        from serving.app import application

        serve.run(application(self.args, replica_env=self.env), name=self.name, route_prefix=f"/{self.name}")
        return self

    def __exit__(self, *exc):
        pass  # ends with the Ray instance

    def cpu_parts(self) -> dict:
        """This application's replica, the HTTP proxy, and the rest of Ray (controller, raylet, GCS,
        agents); the shared ones are idle while another target runs. Other applications' replicas
        are left out."""
        import psutil

        mine, proxy, rest = [], [], []
        for p in psutil.Process().children(recursive=True):
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if "serving.inprocess" in cmd or "baseline_server.py" in cmd:
                continue
            if "ServeReplica:" in cmd:
                if f"ServeReplica:{self.name}:" in cmd:
                    mine.append(p)
            else:
                (proxy if "ProxyActor" in cmd else rest).append(p)
        return {"replica": mine, "proxy": proxy, "ray": rest}


class ServerTarget(Subprocess):
    def __init__(self, cmd: list[str], port: int, env: dict[str, str] | None = None):
        super().__init__(cmd, env)
        self.base = f"http://127.0.0.1:{port}"

    def cpu_parts(self) -> dict:
        import psutil

        root = psutil.Process(self.proc.pid)
        return {"server": [root, *root.children(recursive=True)]}


def parse_target(spec: str) -> tuple[str, int | None, dict[str, Any], dict[str, str]]:
    """`NAME[@THREADS][+key=value...]` -> (kind, threads, server settings, environment). Lower-case
    keys are Serve arguments of our servers (`ray+stream_interval_ms=100`); upper-case keys are
    environment variables of that server's processes (`ray+RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0`:
    the replica's; Ray-wide knobs such as the proxy's go in --ray-env)."""
    head, *pairs = spec.split("+")
    kind, _, pinned = head.partition("@")
    if kind not in ("ray", "inproc", "baseline", "generate"):
        raise SystemExit(f"--targets: unknown target {kind!r} in {spec!r}; expected ray, inproc, baseline or generate")
    settings: dict[str, Any] = {}
    env: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise SystemExit(f"--targets: {pair!r} in {spec!r} is not KEY=VALUE")
        if key.isupper():
            env[key] = value
        else:
            settings[key] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    if (settings or env) and kind not in ("ray", "inproc"):
        raise SystemExit(f"--targets: {spec!r}: only ray and inproc take settings")
    return kind, int(pinned) if pinned else None, settings, env


def target(spec: str, index: int, model_dir: Path, threads: int | None, max_batch: int, engine_args: dict,
           ray: RayServe):
    """threads=None: our servers as shipped (their default threads), the baseline on every core.
    engine_args: serving settings for our two servers (unset ones keep their defaults); a target's
    own settings (`ray+key=value`) go on top."""
    kind, pinned, settings, env = parse_target(spec)
    threads = pinned or threads
    settings = {**engine_args, **settings, **({"num_threads": threads} if threads else {})}
    if kind == "ray":
        args = {"model": str(model_dir), "served_model_name": "bench", "max_batch_size": max_batch, "max_queue": 1024,
                **settings}
        return RayTarget(ray, f"t{index}", args, env)
    port = free_port()
    if kind == "inproc":
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
        return ServerTarget([sys.executable, "-m", "serving.inprocess", "--model", str(model_dir), "--served-model-name",
                             "bench", "--port", str(port), "--max-batch-size", str(max_batch), "--max-queue", "1024",
                             *flags], port, env)
    return ServerTarget([sys.executable, str(ROOT / "bench" / "serving" / "baseline_server.py"), "--model",
                         str(model_dir), "--port", str(port),
                         "--num-threads", str(threads or os.cpu_count() or 1)], port)


def generate_anchor(model_dir: Path, prompts: list[str], a, threads: int | None):
    """Plain `model.generate` on static batches of c prompts (the same requests a level sends):
    returns a function of c that runs one level and gives its row."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    n_threads = threads or os.cpu_count() or 1

    def batch(k: int, c: int):
        ps = [prompts[(k + j) % len(prompts)] for j in range(c)]
        enc = tok(ps, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=a.output_len, min_new_tokens=a.output_len, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        return c * (out.shape[1] - enc["input_ids"].shape[1])

    def level(c: int) -> dict:
        torch.set_num_threads(n_threads)
        n = max(a.min_requests, c * a.requests_per_slot)
        start, tokens = time.perf_counter(), 0
        for k in range(0, n, c):
            tokens += batch(k, c)
        duration = time.perf_counter() - start
        return {"concurrency": c, "requests": n, "errors": 0, "duration_s": duration,
                "output_tokens_per_s": tokens / duration}

    torch.set_num_threads(n_threads)
    batch(0, 2)  # warm-up
    return level


# -- CPU sweep --------------------------------------------------------------------------------------

def make_prompts(model_dir: Path, n: int, input_len: int, seed: int) -> list[str]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    rng = random.Random(seed)
    special = set(tok.all_special_ids)
    vocab = [i for i in range(len(tok)) if i not in special]
    return [tok.decode([rng.choice(vocab) for _ in range(input_len)]) for _ in range(n)]


def cpu_sweep(a) -> dict:
    from tinymodel import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="kaito-bench-"))
    model_dir = build_tiny_model(work / "model", architecture="llama", seed=0, **MODEL_SHAPE)
    from transformers import AutoConfig
    cfg = AutoConfig.from_pretrained(model_dir)
    h, L, v, i = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size, cfg.intermediate_size
    n_params = L * (4 * h * h + 3 * h * i) + 2 * v * h
    prompts = make_prompts(model_dir, 64, a.input_len, a.seed)
    results: dict = {"model": {"architecture": "llama", **MODEL_SHAPE, "parameters": n_params},
                     "input_len": a.input_len, "output_len": a.output_len, "threads": a.threads,
                     "stream_interval_ms": a.stream_interval_ms, "prefill_chunk": a.prefill_chunk,
                     "ray_env": a.ray_env, "targets": {}}
    engine_args = {k: v for k, v in (("stream_interval_ms", a.stream_interval_ms),
                                     ("prefill_chunk", a.prefill_chunk)) if v is not None}
    with contextlib.ExitStack() as stack:
        levels = {}  # target name -> function of c giving that level's row
        ray = RayServe(sum(parse_target(name)[0] == "ray" for name in a.targets))
        for index, name in enumerate(a.targets):  # with --rounds > 1 every target is up at once, and rounds alternate
            kind, pinned, _, _ = parse_target(name)
            print(f"== {name}", flush=True)
            if kind == "generate":
                levels[name] = generate_anchor(model_dir, prompts, a, pinned or a.threads)
            else:
                if kind == "ray" and ray.port is None:
                    stack.enter_context(ray)
                t = stack.enter_context(target(name, index, model_dir, a.threads, max(a.concurrency), engine_args,
                                               ray))
                wait_healthy(t.base)
                asyncio.run(sweep_level(t.base, "bench", prompts, 2, 2, 4))  # warm-up
                levels[name] = _with_cpu(t.cpu_parts, lambda c, base=t.base: asyncio.run(sweep_level(
                    base, "bench", prompts, c, max(a.min_requests, c * a.requests_per_slot), a.output_len)))
            if a.rounds == 1:
                results["targets"][name] = [_measure(name, c, levels[name]) for c in a.concurrency]
                stack.close()
        if a.rounds > 1:
            per_round = _interleaved(a, levels)
            results["rounds"] = per_round
            results["targets"] = {name: [{"concurrency": c, "output_tokens_per_s": statistics.median(
                r["output_tokens_per_s"] for r in per_round[name][k])} for k, c in enumerate(a.concurrency)]
                for name in a.targets}
    return results


def _interleaved(a, levels) -> dict:
    """Every level: round after round, each target once per round (so load drifts hit all alike)."""
    out = {name: [[] for _ in a.concurrency] for name in levels}
    for k, c in enumerate(a.concurrency):
        for r in range(a.rounds):
            for name, level in levels.items():
                out[name][k].append(_measure(name, c, level, r))
    return out


def _cpu_s(procs) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # noqa: BLE001 - psutil.NoSuchProcess: it ended; its time is lost to both ends
            pass
    return total


def _with_cpu(parts, level):
    """The level's row plus the server side's CPU time per output token, by part (load-independent
    where throughput is not: what a token costs, not how fast the shared machine ran it)."""
    def measured(c: int) -> dict:
        before = {k: _cpu_s(ps) for k, ps in parts().items()}
        row = level(c)
        tokens = row["output_tokens_per_s"] * row["duration_s"]
        row["cpu_ms_per_token"] = {k: 1e3 * (_cpu_s(ps) - before[k]) / max(tokens, 1)
                                   for k, ps in parts().items() if k in before}
        return row
    return measured


def _measure(name: str, c: int, level, round_: int | None = None) -> dict:
    row = level(c)
    row["load_average"] = os.getloadavg()[0]
    tag = "" if round_ is None else f" round {round_}"
    cpu = "".join(f" {k} {v:.2f}" for k, v in row.get("cpu_ms_per_token", {}).items())
    extra = "" if "ttft_p50_ms" not in row else (
        f"  ttft p50 {row['ttft_p50_ms']:7.1f} ms  tpot p50 {row['tpot_p50_ms']:6.1f} ms  "
        f"p50 {row['latency_p50_ms']:8.1f} ms  p99 {row['latency_p99_ms']:8.1f} ms  errors {row['errors']}"
        f"  cpu ms/token:{cpu}")
    print(f"   {name:<10} c={c:<3}{tag} {row['output_tokens_per_s']:8.1f} tok/s{extra}  "
          f"(load {row['load_average']:.1f})", flush=True)
    return row


RATIOS = [("ray", "baseline"), ("ray", "generate"), ("inproc", "generate"), ("ray", "inproc"),
          ("inproc", "baseline"), ("inproc@1", "inproc@2"), ("inproc@1", "generate@2"), ("inproc@2", "generate@2"),
          ("generate@1", "generate@2")]


def ratio_pairs(names: list[str]) -> list[tuple[str, str]]:
    """The fixed pairs present, then each variant against its plain target (`ray+k=v` / `ray`,
    `ray@1` / `ray`) and each Ray variant against in-process."""
    pairs = [(x, y) for x, y in RATIOS if x in names and y in names]
    for name in names:
        base = name.split("+")[0].split("@")[0]
        for other in ([base] if base != name else []) + (["inproc"] if base == "ray" and name != "ray" else []):
            if other in names and (name, other) not in pairs:
                pairs.append((name, other))
    return pairs


def print_table(res: dict) -> None:
    t = res["targets"]
    names = list(t)
    pairs = ratio_pairs(names)
    print("\nconcurrency | " + " | ".join(f"{n} tok/s" for n in names) + " | "
          + " | ".join(f"{x}/{y}" for x, y in pairs))
    res["ratios"] = {}
    rounds = res.get("rounds")
    for k, row in enumerate(next(iter(t.values()))):
        c = row["concurrency"]
        vals = {n: t[n][k]["output_tokens_per_s"] for n in names}
        if rounds:  # the median of each round's ratio: both sides measured minutes apart at most
            ratios = {f"{x}/{y}": statistics.median(rx["output_tokens_per_s"] / ry["output_tokens_per_s"]
                                                    for rx, ry in zip(rounds[x][k], rounds[y][k]))
                      for x, y in pairs}
        else:
            ratios = {f"{x}/{y}": vals[x] / vals[y] for x, y in pairs}
        res["ratios"][str(c)] = ratios
        print(f"{c:>11} | " + " | ".join(f"{vals[n]:>8.1f}" for n in names) + " | "
              + " | ".join(f"{r:>6.2f}x" for r in ratios.values()))
    if "ray" in t and "inproc" in t and "latency_p50_ms" in t["ray"][0]:
        d = t["ray"][0]["latency_p50_ms"] - t["inproc"][0]["latency_p50_ms"]
        print(f"Ray Serve p50 overhead at concurrency {t['ray'][0]['concurrency']}: {d:+.1f} ms")


def ray_idle(a) -> dict:
    """The CPU an idle Ray Serve instance with our application takes, by process, over --idle-s
    seconds (a tax on every token on a small machine; set Ray's knobs with --ray-env)."""
    import psutil

    from tinymodel import build_tiny_model

    model_dir = build_tiny_model(Path(tempfile.mkdtemp(prefix="kaito-bench-")) / "model", architecture="llama",
                                 seed=0, **MODEL_SHAPE)
    with RayServe(1) as ray, RayTarget(ray, "t0", {"model": str(model_dir), "served_model_name": "bench"}, {}) as t:
        wait_healthy(t.base)
        time.sleep(5)
        procs = psutil.Process().children(recursive=True)

        def by_kind() -> dict[str, float]:
            out: dict[str, float] = {}
            for p in procs:
                try:
                    cmd = " ".join(p.cmdline())
                except psutil.Error:
                    continue
                kind = next((k for k in ("ServeReplica", "ProxyActor", "ServeController", "gcs_server", "raylet",
                                         "DashboardAgent", "dashboard.py", "log_monitor", "monitor.py")
                             if k in cmd), "other")
                out[kind] = out.get(kind, 0.0) + _cpu_s([p])
            return out

        before, start = by_kind(), time.perf_counter()
        time.sleep(a.idle_s)
        after, wall = by_kind(), time.perf_counter() - start
    row = {k: 100 * (after[k] - before.get(k, 0.0)) / wall for k in after}
    row["total"] = sum(row.values())
    print("   idle CPU, % of one core: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
    return {"idle_cpu_percent": row, "ray_env": a.ray_env}


# -- engine scenarios (in-process, no HTTP): chunked prefill and prefix reuse ---------------------

LONG_JOIN_SHAPE = dict(hidden_size=512, intermediate_size=1408, num_layers=4, num_heads=8, num_kv_heads=8,
                       context_length=2048)


def _scenario_model(a):
    import torch

    from serving.loading import load_model
    from tinymodel import build_tiny_model

    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="kaito-bench-"))
    return load_model(str(build_tiny_model(work / "model", architecture="llama", seed=0, **LONG_JOIN_SHAPE)))


def _ids(lm, n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    special = set(lm.tokenizer.all_special_ids)
    vocab = [i for i in range(lm.model.config.vocab_size) if i not in special]
    return [rng.choice(vocab) for _ in range(n)]


def long_join(a) -> dict:
    """15 streams decode; a 1,500-token prompt joins. Inter-token latency of the 15, by chunk size.

    Token times are taken where the engine produces them (the end of each step that gave the
    stream a token), not where text arrives: random tokens often end in an incomplete UTF-8
    character, whose text is held back until it completes, which would look like a stall.
    """
    from serving.engine import Engine
    from serving.scheduler import SamplingParams

    lm = _scenario_model(a)
    out = {"model": {"architecture": "llama", **LONG_JOIN_SHAPE}, "long_prompt": 1500, "streams": 15, "runs": {}}
    runs = [(c, None) for c in a.chunks] + [(256, pace) for pace in a.paces]
    for chunk, pace in runs:
        engine = Engine.from_loaded(lm, max_running=32, max_queue=32, prefill_chunk=chunk or None,
                                    prefix_cache=False, partial_per_row=pace)
        produced: dict[int, list[float]] = {}
        step = engine._step

        def timed(s, step=step):
            tokens = step(s)
            now = time.perf_counter()
            for sid in tokens:
                produced.setdefault(sid, []).append(now)
            return tokens

        engine._step = timed
        params = SamplingParams(max_tokens=160, temperature=0.0, ignore_eos=True)

        async def stream(ids, p=params):
            async for _ in await engine.generate(ids, p):
                pass

        async def main():
            tasks = [asyncio.ensure_future(stream(_ids(lm, 32, i))) for i in range(15)]
            while len(produced) < 15 or min(len(t) for t in produced.values()) < 40:  # steady state first
                await asyncio.sleep(0.01)
            joined = time.perf_counter()
            long = SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True)
            await asyncio.gather(*tasks, stream(_ids(lm, 1500, 99), long))
            return joined

        joined = asyncio.run(main())
        engine.shutdown()
        streams = [t for t in produced.values() if len(t) == 160]
        steady = [t1 - t0 for ts in streams for t0, t1 in zip(ts[5:], ts[6:]) if t1 < joined]
        during = [t1 - t0 for ts in streams for t0, t1 in zip(ts, ts[1:]) if t1 >= joined]
        p50 = statistics.median(steady)
        row = {"steady_itl_p50_ms": 1e3 * p50, "steady_p99_over_p50": pct(steady, 99) / p50,
               "itl_p99_ms": 1e3 * pct(during, 99),
               "max_gap_ms": 1e3 * max(during), "p99_over_p50": pct(during, 99) / p50,
               "max_over_p50": max(during) / p50,
               "long_ttft_ms": 1e3 * (min(t[0] for t in produced.values() if len(t) == 4) - joined)}
        label = f"{chunk or 'off'}" + (f", {pace:g}/row" if pace else "")
        out["runs"][label] = row
        print(f"   chunk={label:<12} steady ITL p50 {row['steady_itl_p50_ms']:6.1f} ms  "
              f"p99 {row['itl_p99_ms']:7.1f} ms ({row['p99_over_p50']:5.2f}x)  "
              f"max {row['max_gap_ms']:7.1f} ms ({row['max_over_p50']:5.2f}x)  "
              f"(steady p99 {row['steady_p99_over_p50']:4.2f}x p50: the machine's noise)  "
              f"long prompt TTFT {row['long_ttft_ms']:6.0f} ms", flush=True)
    return out


def prefix_reuse(a) -> dict:
    """TTFT of a 1,016-token prompt cold, then of prompts sharing its first 1,000 tokens."""
    from serving.engine import Engine
    from serving.scheduler import SamplingParams

    lm = _scenario_model(a)
    engine = Engine.from_loaded(lm, max_running=8, max_queue=8)
    system = _ids(lm, 1000, 7)

    async def ttft(ids):
        start = time.perf_counter()
        stream = await engine.generate(ids, SamplingParams(max_tokens=2, temperature=0.0, ignore_eos=True))
        first = None
        async for _ in stream:
            first = first or time.perf_counter()
        return first - start

    cold = [asyncio.run(ttft(_ids(lm, 1016, 100 + k))) for k in range(3)]  # unrelated prompts: all cold
    warm = [asyncio.run(ttft(system + _ids(lm, 16, 200 + k))) for k in range(4)][1:]  # first one seeds it
    engine.shutdown()
    row = {"cold_ttft_ms": 1e3 * statistics.median(cold), "warm_ttft_ms": 1e3 * statistics.median(warm)}
    row["ratio"] = row["warm_ttft_ms"] / row["cold_ttft_ms"]
    print(f"   TTFT cold {row['cold_ttft_ms']:.1f} ms, shared 1,000-token prefix {row['warm_ttft_ms']:.1f} ms: "
          f"{row['ratio']:.3f}x", flush=True)
    return row


def engine_vs_generate(a) -> dict:
    """In-process, no HTTP: the engine on c concurrent requests vs `generate` on the same static
    batch, alternating for --rounds rounds (the sweep's model and prompts; py-spy-able)."""
    import torch

    from serving.engine import Engine
    from serving.loading import load_model
    from serving.scheduler import SamplingParams
    from tinymodel import build_tiny_model

    threads = a.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    model_dir = build_tiny_model(Path(tempfile.mkdtemp(prefix="kaito-bench-")) / "model", architecture="llama",
                                 seed=0, **MODEL_SHAPE)
    prompts = make_prompts(model_dir, 64, a.input_len, a.seed)
    lm = load_model(str(model_dir))
    engine = Engine.from_loaded(lm, max_running=max(a.concurrency), max_queue=1024)
    gen = generate_anchor(model_dir, prompts, a, threads)
    params = SamplingParams(max_tokens=a.output_len, temperature=0.0, ignore_eos=True)

    def ours(c: int) -> float:
        async def one(text):
            n = 0
            async for d in await engine.generate(lm.tokenizer(text)["input_ids"], params):
                n = d.completion_tokens
            return n

        async def main():
            return await asyncio.gather(*[one(prompts[j % len(prompts)]) for j in range(c)])
        start = time.perf_counter()
        return sum(asyncio.run(main())) / (time.perf_counter() - start)

    ours(2)
    out = {}
    for c in a.concurrency:
        ratios = []
        for r in range(a.rounds):
            e, g = ours(c), gen(c)["output_tokens_per_s"]
            ratios.append(e / g)
            print(f"   c={c:<3} round {r}: engine {e:7.1f} tok/s  generate {g:7.1f} tok/s  {e / g:5.2f}x  "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
        out[str(c)] = {"ratios": ratios, "median": statistics.median(ratios)}
    engine.shutdown()
    return out


# -- GPU path ---------------------------------------------------------------------------------------

PHI3_MINI = dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)


def gpu_bench(a) -> dict:
    """Engine-level (no HTTP): batch-1 decode tokens/s and MBU, then 64 concurrent sequences;
    eager, then (unless --no-compile) with compile_decode (static shapes, CUDA graphs)."""
    import torch
    from transformers import AutoTokenizer, Phi3Config, Phi3ForCausalLM

    from serving import kvbudget, roofline
    from serving.engine import Engine
    from serving.loading import LoadedModel
    from serving.scheduler import SamplingParams
    from tinymodel import build_tiny_model

    dev = a.device  # "cuda"; the code path runs on "cpu" too (with a smaller PHI3_MINI), unmeasured there
    cuda = dev == "cuda"
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = a.peak_gbps or roofline.peak_gbps(name)
    cfg = Phi3Config(**PHI3_MINI, dtype="bfloat16", attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(dev):
        model = Phi3ForCausalLM(cfg).to(torch.bfloat16).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_per_token = kvbudget.bytes_per_token(cfg, 2)
    tok = AutoTokenizer.from_pretrained(build_tiny_model(Path(tempfile.mkdtemp()) / "t"))
    loaded = LoadedModel(model=model, tokenizer=tok, context_length=4096, chat_template="", device=dev)
    prompt = [5] * a.input_len
    out = {"device": name, "model": "phi-3-mini shape, random, bf16, sdpa", "weight_bytes": weight_bytes,
           "peak_gbps": peak, "runs": {}}
    for compiled in ([False] if a.no_compile else [False, True]):
        engine = Engine.from_loaded(loaded, max_running=64, max_queue=256, compile_decode=compiled)

        async def run(n: int, max_tokens: int, engine=engine) -> float:
            p = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)

            async def one():
                async for _ in await engine.generate(prompt, p):
                    pass
            t = time.perf_counter()
            await asyncio.gather(*[one() for _ in range(n)])
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - t

        asyncio.run(run(1, a.gpu_tokens))  # warm-up (and, compiled, the graphs of batch 1)
        asyncio.run(run(64, 16))
        t_prefill = asyncio.run(run(1, 1))
        t1 = asyncio.run(run(1, a.gpu_tokens))
        step_s = (t1 - t_prefill) / (a.gpu_tokens - 1)
        mean_context = a.input_len + a.gpu_tokens / 2
        t64 = asyncio.run(run(64, a.gpu_tokens))
        engine.shutdown()
        row = {"batch1_decode_tokens_per_s": 1 / step_s, "concurrency64_tokens_per_s": 64 * a.gpu_tokens / t64,
               "mbu": roofline.mbu(step_s, roofline.decode_bytes(weight_bytes, kv_per_token, int(mean_context)),
                                   peak) if peak else None}
        out["runs"]["compile_decode" if compiled else "eager"] = row
        print(f"   {'compile_decode' if compiled else 'eager':<14} batch-1 {row['batch1_decode_tokens_per_s']:7.1f} "
              f"tok/s  MBU {row['mbu'] or float('nan'):.2f}  c=64 {row['concurrency64_tokens_per_s']:8.1f} tok/s",
              flush=True)
    print(json.dumps(out, indent=2))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke test: concurrency 1 and 4, short outputs")
    p.add_argument("--targets", nargs="+", default=["ray", "inproc", "baseline", "generate"],
                   help="ray, inproc, baseline, generate; NAME@N pins that one to N torch threads; "
                        "ray/inproc+key=value a Serve argument, +KEY=value an environment variable")
    p.add_argument("--ray-env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="environment for the embedded Ray instance (e.g. Serve's RAY_SERVE_* knobs)")
    p.add_argument("--rounds", type=int, default=1,
                   help="> 1: every target up at once, levels measured in alternating rounds, median ratios")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--input-len", type=int, default=32)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--requests-per-slot", type=int, default=1, help="requests per level = concurrency x this")
    p.add_argument("--min-requests", type=int, default=8)
    p.add_argument("--threads", type=int, default=None,
                   help="pin every target to N torch threads (default: as shipped; baselines on every core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stream-interval-ms", type=float, default=None, help="ray/inproc: default as shipped")
    p.add_argument("--prefill-chunk", type=int, default=None, help="ray/inproc: default as shipped (0 = whole)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--scenario", choices=["sweep", "long-join", "prefix", "engine", "ray-idle"], default="sweep",
                   help="engine: in-process engine vs generate on the same batch, no HTTP; ray-idle: the CPU "
                        "an idle Ray Serve instance takes, by process")
    p.add_argument("--idle-s", type=float, default=30.0, help="ray-idle: seconds to measure")
    p.add_argument("--chunks", type=int, nargs="+", default=[0, 32, 256],
                   help="long-join: prefill chunk sizes to compare (0 = whole prompt), no per-row pace")
    p.add_argument("--paces", type=float, nargs="*", default=[2.0],
                   help="long-join: chunk 256 with the long prompt's chunk held to N tokens per decoding row")
    p.add_argument("--gpu-tokens", type=int, default=256)
    p.add_argument("--no-compile", action="store_true", help="--device cuda: eager only")
    p.add_argument("--peak-gbps", type=float, default=None, help="GPU memory bandwidth, GB/s (default: by name)")
    a = p.parse_args()
    os.environ.update(kv.split("=", 1) for kv in a.ray_env)  # before Ray starts: its workers inherit it
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if a.quick:
        a.concurrency, a.output_len, a.input_len, a.min_requests = [1, 4], 16, 32, 4
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = RESULTS
    if a.device == "cuda":
        res = {"gpu": gpu_bench(a)}
    elif a.scenario != "sweep":
        run = {"long-join": long_join, "prefix": prefix_reuse, "engine": engine_vs_generate,
               "ray-idle": ray_idle}[a.scenario]
        res = {a.scenario: run(a)}
        out = RESULTS.with_name(f"serving-{a.scenario}.json")
    else:
        res = cpu_sweep(a)
        print_table(res)
    res["command"] = " ".join(["bench/serving/run.py", *sys.argv[1:]])
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
