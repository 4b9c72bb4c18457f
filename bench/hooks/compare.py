"""Hook server A/B: this tree against another checkout (e.g. the main branch), interleaved in one run.

    .venv/bin/python bench/hooks/compare.py --other /path/to/other/checkout [--rounds 5] [--seconds 3]

Starts both hook servers (gunicorn, 2 workers, 127.0.0.1) and alternates short wrk runs of the
workspace sync payload of bench/hooks/run.py, plus one NodeProvisioner sync of 1,000 Workspaces
per round, so load drift on a shared machine hits both sides alike. Prints medians and ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import free_port, nodeprovisioner_body, post, run_wrk, workspace_sync_body  # noqa: E402


def _start(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(root), "KAITO_CLAIM_API": "nodeclaim",
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="kaito-bench-metrics-")}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:hooks.shell.gunicorn_conf", "-w", "2",
                             "-b", f"127.0.0.1:{port}", "hooks.shell.app:app"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gunicorn from {root} did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, type=Path, help="the other checkout (its root)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args(argv)
    body = workspace_sync_body()
    np_body = json.dumps(nodeprovisioner_body(1000)).encode()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        f.write(body)
    sides = {"this": ROOT, "other": args.other.resolve()}
    servers = {name: _start(root) for name, root in sides.items()}
    syncs: dict[str, list[float]] = {n: [] for n in sides}
    np_ms: dict[str, list[float]] = {n: [] for n in sides}
    try:
        for _, url in servers.values():
            post(url + "/workspace/sync", body)
            post(url + "/nodeprovisioner/sync", np_body)
        for _ in range(args.rounds):
            for name, (_, url) in servers.items():
                result = run_wrk(url + "/workspace/sync", f.name, args.seconds, args.connections)
                if result["non_2xx"]:
                    raise RuntimeError(f"{name}: {result['non_2xx']} non-2xx replies")
                syncs[name].append(result["requests_per_s"])
                start = time.perf_counter()
                post(url + "/nodeprovisioner/sync", np_body)
                np_ms[name].append((time.perf_counter() - start) * 1000)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)
        os.unlink(f.name)
    med = {n: (statistics.median(syncs[n]), statistics.median(np_ms[n])) for n in sides}
    print(f"this = {ROOT}, other = {sides['other']}; {args.rounds} interleaved rounds, wrk -c{args.connections} "
          f"{args.seconds}s, load average {os.getloadavg()[0]:.1f}")
    print(f"  {'':<8}{'workspace syncs/s':>19}{'NodeProvisioner 1k ms':>23}")
    for n in sides:
        print(f"  {n:<8}{med[n][0]:>19.0f}{med[n][1]:>23.0f}")
    print(f"  this/other: throughput {med['this'][0] / med['other'][0]:.2f}x, "
          f"NodeProvisioner time {med['this'][1] / med['other'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
