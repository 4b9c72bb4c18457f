"""Live-adapter benchmark (issue 14), side by side on two models in one run: the tiny preset's shape
and bench/serving's ~27M Llama. Each model is served in-process without Ray (a subprocess running
uvicorn around serving.api over serving.service.Service, adapter API on), loaded over HTTP:

  load-to-first  POST /v1/load_lora_adapter (local directory), then one streamed request for it:
                 seconds from the load call to the first token (goal <= 2 s)
  churn          concurrency 8 on the base and three adapters: a steady phase, then the same load while
                 adapters are added, swapped (new digest under the same name) and removed: failed
                 requests, broken streams (no [DONE]), p99 inter-token latency churn vs steady
  mixed          8 distinct adapters mixed at concurrency 16 vs base-only at concurrency 16 (goal >= 0.75x),
                 --rounds interleaved pairs of phases (the order alternating), the median of the ratios
  many           64 registered (8 adapter directories x 8 names): 8 resident vs 64 resident under
                 uniform random choice at concurrency 16; and the cold-load p50 (first token of a lone
                 request for a non-resident adapter) against a resident one

    .venv/bin/python bench/adapters/run.py            # both models
    .venv/bin/python bench/adapters/run.py --quick    # shorter phases
    .venv/bin/python bench/adapters/run.py --scenarios mixed many   # only those

Writes bench/results/adapters.json. Only the bench's server adds POST /bench/apply (Service.apply_adapters),
the config path a Workspace edit takes.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "adapters.json"
_spec = importlib.util.spec_from_file_location("serving_bench", ROOT / "bench" / "serving" / "run.py")
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)

MODELS = {"tiny": {}, "27M": sb.MODEL_SHAPE}
SCENARIOS = ("load", "churn", "mixed", "many")
PROMPT_LEN, OUTPUT_LEN = 32, 32


# -- server (a subprocess: `run.py --serve PORT ARGS_JSON`) -----------------------------------------

def serve(port: int, args: dict) -> None:
    import uvicorn

    from serving.api import create_app
    from serving.service import Service

    svc = Service(args, background=False)
    app = create_app(lambda: svc)

    @app.post("/bench/apply")
    async def apply(body: dict):
        return await svc.apply_adapters(body["adapters"])

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- client -----------------------------------------------------------------------------------------

async def stream(client, model: str, prompt: str, max_tokens: int = OUTPUT_LEN) -> dict:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True}
    start, stamps, done = time.perf_counter(), [], False
    try:
        async with client.stream("POST", "/v1/completions", json=body) as r:
            if r.status_code != 200:
                return {"error": f"HTTP {r.status_code}", "start": start}
            async for line in r.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    obj = json.loads(line[6:])
                    if "error" in obj:
                        return {"error": "error in stream", "start": start}
                    if obj["choices"] and obj["choices"][0].get("text"):
                        stamps.append(time.perf_counter())
    except Exception as e:  # noqa: BLE001 - a broken connection is a broken stream
        return {"error": f"broken: {e}", "start": start}
    if not done:
        return {"error": "broken: no [DONE]", "start": start}
    return {"start": start, "ttft": (stamps[0] - start) if stamps else None, "stamps": stamps,
            "end": time.perf_counter()}


def itls(results: list[dict], lo: float = float("-inf"), hi: float = float("inf")) -> list[float]:
    """Inter-token gaps whose later token fell within [lo, hi)."""
    out = []
    for r in results:
        s = r.get("stamps") or []
        out += [b - a for a, b in zip(s, s[1:]) if lo <= b < hi]
    return out


async def load_at(base: str, concurrency: int, duration: float, pick, prompts) -> tuple[list[dict], float]:
    import httpx

    results: list[dict] = []
    stop = time.perf_counter() + duration
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        async def worker(w):
            rng = random.Random(w)
            while time.perf_counter() < stop:
                results.append(await stream(client, pick(rng), prompts[rng.randrange(len(prompts))]))
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(w) for w in range(concurrency)])
        return results, time.perf_counter() - t0


def throughput(results: list[dict], seconds: float) -> float:
    return sum(len(r.get("stamps") or []) for r in results) / seconds


async def post(client, path: str, body: dict) -> dict | str:
    r = await client.post(path, json=body)
    if r.status_code != 200:
        raise RuntimeError(f"{path}: {r.status_code} {r.text}")
    return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text


# -- scenarios --------------------------------------------------------------------------------------

async def load_to_first(base: str, dirs: list[Path], prompts, rounds: int) -> dict:
    import httpx

    times = []
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        for i in range(rounds):
            name = f"fresh{i}"
            t0 = time.perf_counter()
            await post(client, "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(dirs[i % len(dirs)])})
            r = await stream(client, name, prompts[0], max_tokens=4)
            times.append(r["start"] + r["ttft"] - t0)
            await post(client, "/v1/unload_lora_adapter", {"lora_name": name})
    return {"rounds": rounds, "p50_s": statistics.median(times), "max_s": max(times)}


async def churn(base: str, dirs: list[Path], prompts, seconds: float) -> dict:
    import httpx

    def spec(name, d):
        return {"name": name, "source": str(d), "strength": 0.0}

    stable = [spec("s0", dirs[0]), spec("s1", dirs[1]), spec("sw", dirs[2])]
    async with httpx.AsyncClient(base_url=base, timeout=300) as admin:
        await post(admin, "/bench/apply", {"adapters": stable})
        models = ["base", "s0", "s1", "sw"]

        def pick(rng):
            return rng.choice(models)

        steady, _ = await load_at(base, 8, seconds, pick, prompts)
        windows: list[tuple[float, float]] = []
        changes = 0

        async def changer():
            nonlocal changes
            i = 0
            stop = time.perf_counter() + seconds
            while time.perf_counter() < stop:
                await asyncio.sleep(0.4)
                swapped = spec("sw", dirs[2 + (i + 1) % 2])  # a new digest under the same name
                extra = [spec(f"t{i}", dirs[(i + 3) % len(dirs)])]  # one added, the previous one removed
                t0 = time.perf_counter()
                await post(admin, "/bench/apply", {"adapters": [*stable[:2], swapped, *extra]})
                windows.append((t0, time.perf_counter()))
                changes += 1
                i += 1

        (during, _), _ = await asyncio.gather(load_at(base, 8, seconds, pick, prompts), changer())
    swap_itl = [g for lo, hi in windows for g in itls(during, lo, hi + 0.05)]
    steady_itl = itls(steady)
    failed = [r["error"] for r in during if "error" in r]
    return {"changes": changes, "requests_steady": len(steady), "requests_churn": len(during),
            "failed": sum(not e.startswith("broken") for e in failed), "broken_streams": sum(e.startswith("broken")
                                                                                                for e in failed),
            "itl_p99_steady_ms": 1e3 * sb.pct(steady_itl, 99), "itl_p99_swap_ms": 1e3 * sb.pct(swap_itl, 99),
            "itl_p99_ratio": sb.pct(swap_itl, 99) / sb.pct(steady_itl, 99),
            "itl_p50_steady_ms": 1e3 * sb.pct(steady_itl, 50), "itl_p50_swap_ms": 1e3 * sb.pct(swap_itl, 50)}


async def mixed(base: str, dirs: list[Path], prompts, seconds: float, rounds: int) -> dict:
    import httpx

    names = [f"m{i}" for i in range(8)]
    async with httpx.AsyncClient(base_url=base, timeout=300) as admin:
        await post(admin, "/bench/apply", {"adapters": [{"name": n, "source": str(dirs[i % len(dirs)]),
                                                         "strength": 0.0} for i, n in enumerate(names)]})
    picks = {"base": lambda rng: "base", "mixed": lambda rng: rng.choice(names)}
    tps: dict[str, list[float]] = {"base": [], "mixed": []}
    errors = 0
    for i in range(rounds):  # interleaved, the order alternating: load drift on a shared machine hits both
        for arm in (("base", "mixed") if i % 2 == 0 else ("mixed", "base")):
            res, t = await load_at(base, 16, seconds, picks[arm], prompts)
            tps[arm].append(throughput(res, t))
            errors += sum("error" in r for r in res)
    ratios = [m / b for b, m in zip(tps["base"], tps["mixed"])]
    return {"base_tokens_per_s": statistics.median(tps["base"]), "mixed_tokens_per_s": statistics.median(tps["mixed"]),
            "ratio": statistics.median(ratios), "ratios": ratios, "errors": errors}


async def many(base: str, dirs: list[Path], prompts, seconds: float, resident: int) -> dict:
    import httpx

    names = [f"r{i}" for i in range(64)]
    async with httpx.AsyncClient(base_url=base, timeout=300) as admin:
        await post(admin, "/bench/apply", {"adapters": [{"name": n, "source": str(dirs[i % len(dirs)]),
                                                         "strength": 0.0} for i, n in enumerate(names)]})
        for n in names:  # warm: every adapter read once (the page cache), resident as far as the bound allows
            await stream(admin, n, prompts[0], max_tokens=1)
        res, t = await load_at(base, 16, seconds, lambda rng: rng.choice(names), prompts)
        out = {"resident_bound": resident, "tokens_per_s": throughput(res, t), "errors": sum("error" in r for r in res)}
        if resident < len(names):
            # lone requests: one for an adapter just used (resident), one for the least recently used (cold)
            warm_t, cold_t = [], []
            for i in range(10):
                hot = names[i]
                await stream(admin, hot, prompts[0], max_tokens=1)
                warm_t.append((await stream(admin, hot, prompts[0], max_tokens=1))["ttft"])
                for n in names[20 + i * 4:20 + i * 4 + resident]:  # push older ones out
                    await stream(admin, n, prompts[0], max_tokens=1)
                cold_t.append((await stream(admin, hot, prompts[0], max_tokens=1))["ttft"])
            out.update(ttft_resident_p50_ms=1e3 * statistics.median(warm_t),
                       ttft_cold_p50_ms=1e3 * statistics.median(cold_t))
    return out


# -- driver -----------------------------------------------------------------------------------------

def bench_model(label: str, shape: dict, work: Path, a) -> dict:
    from tinymodel import build_adapter, build_tiny_model

    model = build_tiny_model(work / label / "model", architecture="llama", seed=0, **shape)
    dirs = [build_adapter(model, work / label / f"adapter{i}", seed=i + 1) for i in range(8)]
    prompts = sb.make_prompts(model, 32, PROMPT_LEN, 0)
    out: dict = {"shape": shape or "tiny preset"}
    for resident in (8, 64):
        port = sb.free_port()
        url = f"http://127.0.0.1:{port}"
        args = {"model": str(model), "served_model_name": "base", "adapter_api": True, "max_batch_size": 16,
                "max_queue": 64, "max_resident_adapters": resident, "max_adapters": 64, "num_threads": a.threads}
        with sb.Subprocess([sys.executable, str(Path(__file__).resolve()), "--serve", str(port), json.dumps(args)]):
            sb.wait_healthy(url)
            if resident == 8 and "load" in a.scenarios:
                print(f"== {label}: load-to-first", flush=True)
                out["load_to_first"] = asyncio.run(load_to_first(url, dirs, prompts, a.rounds))
            if resident == 8 and "churn" in a.scenarios:
                print(f"== {label}: churn", flush=True)
                out["churn"] = asyncio.run(churn(url, dirs, prompts, a.seconds))
            if resident == 8 and "mixed" in a.scenarios:
                print(f"== {label}: mixed", flush=True)
                out["mixed"] = asyncio.run(mixed(url, dirs, prompts, a.seconds, a.rounds))
            if "many" in a.scenarios:
                print(f"== {label}: many (resident {resident})", flush=True)
                out[f"many_resident_{resident}"] = asyncio.run(many(url, dirs, prompts, a.seconds, resident))
    if "many" in a.scenarios:
        out["many_ratio_8_vs_64_resident"] = (out["many_resident_8"]["tokens_per_s"]
                                              / out["many_resident_64"]["tokens_per_s"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serve", nargs=2, metavar=("PORT", "ARGS_JSON"), help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", type=int, default=None, help="torch threads of the server (default: its own)")
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    p.add_argument("--rounds", type=int, default=None, help="load-to-first rounds and mixed phase pairs (5; --quick 3)")
    p.add_argument("--seconds", type=float, default=None, help="seconds per load phase (10; --quick 4)")
    a = p.parse_args(argv)
    if a.serve:
        serve(int(a.serve[0]), json.loads(a.serve[1]))
        return 0
    seconds, rounds = (4.0, 3) if a.quick else (10.0, 5)
    a.seconds, a.rounds = a.seconds or seconds, a.rounds or rounds
    work = Path(tempfile.mkdtemp(prefix="kaito-bench-adapters-"))
    results = {"prompt_len": PROMPT_LEN, "output_len": OUTPUT_LEN, "seconds_per_phase": a.seconds,
               "models": {m: bench_model(m, MODELS[m], work, a) for m in a.models}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for m, r in results["models"].items():
        line = [f"{m}:"]
        if "load_to_first" in r:
            line.append(f"load->first {r['load_to_first']['p50_s']:.2f}s p50")
        if "churn" in r:
            c = r["churn"]
            line.append(f"churn: {c['failed']} failed, {c['broken_streams']} broken, ITL p99 swap/steady "
                        f"{c['itl_p99_ratio']:.2f}x")
        if "mixed" in r:
            rounds = " ".join(f"{x:.2f}" for x in r["mixed"]["ratios"])
            line.append(f"mixed/base {r['mixed']['ratio']:.2f}x (median of {rounds})")
        if "many_resident_8" in r:
            m8 = r["many_resident_8"]
            line.append(f"64 reg: 8 vs 64 resident {r['many_ratio_8_vs_64_resident']:.2f}x, cold TTFT p50 "
                        f"{m8.get('ttft_cold_p50_ms', float('nan')):.0f} ms "
                        f"(resident {m8.get('ttft_resident_p50_ms', float('nan')):.0f} ms)")
        print(" | ".join(line))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
