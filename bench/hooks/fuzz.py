"""Hook reliability: the property tests' request generator at a larger budget, against gunicorn.

    .venv/bin/python bench/hooks/fuzz.py [--requests 3000] [--seed N]

Starts the hook server (gunicorn, 2 workers) on 127.0.0.1, sends `--requests` mutated
Metacontroller requests to each sync hook (tests/support/hook_fuzz.py: keys dropped, types
swapped, nulls, huge strings, deep nesting, unicode, lone surrogates, duplicate and foreign
children) and judges every reply by the rule the property tests hold: a non-200, or a 200 that
keeps every observed child unless the valid spec drops it; never a 5xx for client input.
Prints a table and writes bench/results/hooks_fuzz.json. Goals: 0 dropped, 0 5xx.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import free_port, start_gunicorn  # noqa: E402  (bench/hooks/run.py)
from tests.support import hook_fuzz  # noqa: E402


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="mutated requests per sync hook")
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default: random, printed)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "hooks_fuzz.json"))
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    choose = hook_fuzz.RandomChooser(random.Random(seed))
    bases = hook_fuzz.base_requests()
    port = free_port()
    proc = start_gunicorn(port)
    rows, examples = {}, {}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def post(path: str, body: bytes) -> tuple[int, bytes]:
            nonlocal conn
            start = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                status, payload = resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                raise
            latencies.append(time.perf_counter() - start)
            return status, payload

        for path in (hook_fuzz.WORKSPACE_SYNC, hook_fuzz.NP_SYNC):
            latencies: list[float] = []
            statuses: Counter[int] = Counter()
            dropped = server_errors = 0
            names = sorted(bases[path])
            for _ in range(args.requests):
                base = bases[path][choose.pick(names)]
                status, problem, notes = hook_fuzz.one_case(path, base, choose, post)
                statuses[status] += 1
                if problem is not None:
                    if status >= 500:
                        server_errors += 1
                    else:
                        dropped += 1
                    examples.setdefault(path, []).append({"mutations": notes, "problem": problem[:500]})
            rows[path] = {"sent": args.requests, "ok_200": statuses[200],
                          "non_200": {str(s): n for s, n in sorted(statuses.items()) if s != 200},
                          "dropped_observed_child": dropped, "server_errors_for_client_input": server_errors,
                          "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
                          "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2)}
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    result = {"seed": seed, "machine": f"{os.cpu_count()} cores (shared)", "load_avg_1m": os.getloadavg()[0],
              "gunicorn_workers": 2, "hooks": rows, "violations": examples}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"Mutated sync requests against gunicorn -w 2 on 127.0.0.1, seed {seed}, "
          f"load average {result['load_avg_1m']:.1f}:")
    print(f"  {'hook':<22}{'sent':>6}{'200':>6}  {'non-200 by status':<26}{'dropped':>8}{'5xx':>5}{'p50 ms':>8}"
          f"{'p99 ms':>8}")
    for path, r in rows.items():
        non = ", ".join(f"{s}: {n}" for s, n in r["non_200"].items())
        print(f"  {path:<22}{r['sent']:>6}{r['ok_200']:>6}  {non:<26}{r['dropped_observed_child']:>8}"
              f"{r['server_errors_for_client_input']:>5}{r['p50_ms']:>8}{r['p99_ms']:>8}")
    for path, found in examples.items():
        print(f"  first violations on {path}: {found[:3]}")
    print(f"wrote {args.out}")
    return 1 if examples else 0


if __name__ == "__main__":
    sys.exit(main())
