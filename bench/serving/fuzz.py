"""Serving reliability under hostile input: the property tests' mutated bodies at a large budget,
over real HTTP, plus clients that go away (mid-body, mid-generation, mid-stream).

Targets (same tiny Llama, one torch thread):
  inproc  uvicorn around the FastAPI app (python -m serving.inprocess)
  ray     the Serve application as deployed (serving.app:build on an embedded local Ray)

    .venv/bin/python bench/serving/fuzz.py                     # 1,000 bodies per route, both targets
    .venv/bin/python bench/serving/fuzz.py --per-route 100 --targets inproc   # quick

Prints, per target: requests sent, 200s, non-200s by status, 5xx for client input (goal 0), p50/p99
latency, disconnect probes and what the server counted (kaito_client_disconnects_total, 5xx in
kaito_requests_total), and /healthz afterwards. Writes bench/results/serving_fuzz.json.
"""
from __future__ import annotations

import argparse
import collections
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "serving"))
RESULTS = ROOT / "bench" / "results" / "serving_fuzz.json"
NAME = "bench"

from run import free_port, target, wait_healthy  # noqa: E402  (bench/serving/run.py: same targets)


def fuzz(base: str, per_route: int, seed: int) -> dict:
    import httpx
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from tests.support import http_fuzz

    statuses: collections.Counter = collections.Counter()
    latencies: list[float] = []
    failures: list[str] = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for route in http_fuzz.ROUTES:
            bases = http_fuzz.valid_bodies(NAME)[route]

            @hseed(seed)
            @settings(max_examples=per_route, deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(st.sampled_from(bases).flatmap(http_fuzz.mutated))
            def one(body):
                t = time.perf_counter()
                r = client.post(route, content=http_fuzz.encode(body), headers={"Content-Type": "application/json"})
                latencies.append(time.perf_counter() - t)
                statuses[r.status_code] += 1
                try:
                    http_fuzz.check_answer(r.status_code, dict(r.headers), r.content,
                                           stream=isinstance(body, dict) and body.get("stream") is True)
                except (AssertionError, ValueError, KeyError) as e:
                    failures.append(f"{route} {r.status_code}: {e!s:.300}")

            one()
    lat = sorted(latencies)
    return {"requests": len(latencies), "statuses": dict(sorted(statuses.items())),
            "ok_200": statuses[200], "non_200": sum(v for k, v in statuses.items() if k != 200),
            "server_errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
            "envelope_failures": len(failures), "failure_examples": failures[:5],
            "latency_p50_ms": 1000 * statistics.median(lat),
            "latency_p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]}


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
    return s


def _request(path: str, body: bytes, declared: int | None = None) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared if declared is not None else len(body)}\r\n\r\n").encode() + body


def disconnects(port: int, n: int) -> dict:
    """n clients each: gone mid-body (slowloris), right after sending (mid-generation), mid-stream."""
    long = {"model": NAME, "prompt": "hi", "max_tokens": 200, "ignore_eos": True}
    probes = {
        "mid_body": lambda: _request("/v1/completions", b'{"model": "bench", "pro', declared=4096),
        "mid_generation": lambda: _request("/chat", json.dumps(
            {"prompt": "hi", "generate_kwargs": {"max_new_tokens": 200}}).encode()),
        "mid_stream": lambda: _request("/v1/completions", json.dumps({**long, "stream": True}).encode()),
    }
    for kind, make in probes.items():
        for _ in range(n):
            s = _connect(port)
            s.sendall(make())
            if kind == "mid_body":
                time.sleep(0.05)
            elif kind == "mid_generation":
                time.sleep(0.1)
            else:
                s.recv(256)  # the status line and the first event: the stream started
            s.close()
    time.sleep(2)  # let the server notice and cancel
    return {kind: n for kind in probes}


def server_counts(base: str) -> dict:
    import httpx

    disc, five = 0.0, 0.0
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith("kaito_client_disconnects_total{"):
            disc += float(line.rsplit(" ", 1)[1])
        if line.startswith("kaito_requests_total{") and 'status="5' in line:
            five += float(line.rsplit(" ", 1)[1])
    return {"disconnects_counted": disc, "requests_5xx_counted": five,
            "healthz_after": httpx.get(base + "/healthz", timeout=10).status_code}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-route", type=int, default=1000, help="mutated bodies per route (default 1000)")
    p.add_argument("--disconnects", type=int, default=30, help="clients per disconnect kind (default 30)")
    p.add_argument("--targets", default="inproc,ray", help="comma-separated: inproc, ray")
    p.add_argument("--seed", type=int, default=20261201)
    a = p.parse_args(argv)

    from tinymodel import build_tiny_model

    results: dict = {"per_route": a.per_route, "seed": a.seed, "targets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "llama", architecture="llama", context_length=256)
        for name in a.targets.split(","):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            t0 = time.perf_counter()
            with target(name, model, port, threads=1, max_batch=8):
                wait_healthy(base)
                r = fuzz(base, a.per_route, a.seed)
                r["disconnect_probes"] = disconnects(port, a.disconnects)
                r.update(server_counts(base))
            r["wall_s"] = time.perf_counter() - t0
            results["targets"][name] = r
            print(f"\n== {name}: {r['requests']} requests, {r['ok_200']} x 200, non-200 by status "
                  f"{ {k: v for k, v in r['statuses'].items() if k != 200} }")
            print(f"   5xx for client input: {r['server_errors_5xx']}   envelope failures: {r['envelope_failures']}"
                  f"   p50 {r['latency_p50_ms']:.1f} ms   p99 {r['latency_p99_ms']:.1f} ms")
            print(f"   disconnect probes {sum(r['disconnect_probes'].values())}: server counted "
                  f"{r['disconnects_counted']:.0f} disconnects, {r['requests_5xx_counted']:.0f} 5xx;"
                  f" /healthz after: {r['healthz_after']}")
            for f in r["failure_examples"]:
                print("   !", f)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    bad = any(t["server_errors_5xx"] or t["envelope_failures"] or t["requests_5xx_counted"] or t["healthz_after"] != 200
              for t in results["targets"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
