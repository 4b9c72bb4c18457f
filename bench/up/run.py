"""Time `kaito up` (or `./dev.sh up`) to its first /chat answer, and count what a clean start and stop print.

    python bench/up/run.py --runs 3                     # warm: the tiny model is already built
    python bench/up/run.py --runs 1 --command "./dev.sh up" --name up-fresh   # on a fresh clone (installs first)

Each run starts the command on a free loopback port, polls POST /chat until it answers 200, notes
when "ready" was printed, sends SIGTERM, and counts every line printed from start to exit.
Writes bench/results/up.json (or --name). The machine is shared: read the medians.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_ok(port: int) -> bool:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/chat", data=b'{"prompt": "Hello"}',
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - not up yet
        return False


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants (Ray's processes run under kaito up)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    tree, grew = {pid}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= new
        grew = bool(new)
    total = 0
    for p in tree:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def one_run(command: list[str], timeout: float) -> dict:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_AUTH_MODE": "disabled"}
    t0 = time.monotonic()
    proc = subprocess.Popen([*command, "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic() - t0, ln.rstrip("\n"))
                                                          for ln in proc.stdout), daemon=True)
    reader.start()
    first = None
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        if chat_ok(port):
            first = time.monotonic() - t0
            break
        time.sleep(0.1)
    rss = tree_rss_mib(proc.pid) if first is not None else None
    ready_at = next((t for t, ln in list(lines) if ln.startswith("kaito up: ready")), None)
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    reader.join(5)
    stopped = time.monotonic() - t0
    return {"first_answer_s": first, "rss_mib": rss, "ready_printed_s": ready_at, "stop_s": stopped - (first or stopped),
            "exit_code": rc, "lines": len(lines), "warnings": [ln for _, ln in lines if "WARN" in ln or "Error" in ln],
            "output": [f"{t:6.2f} {ln}" for t, ln in lines]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--command", default=f"{sys.executable} -m kaito_cli up",
                   help="what to start; '--port N' is appended (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--show", action="store_true", help="print every run's timestamped output")
    p.add_argument("--name", default="up", help="results file bench/results/NAME.json (default: %(default)s)")
    ns = p.parse_args()
    runs = [one_run(shlex.split(ns.command), ns.timeout) for _ in range(ns.runs)]
    for i, r in enumerate(runs):
        if ns.show or r["first_answer_s"] is None:
            print(f"--- run {i + 1}", *r["output"], sep="\n")
    print(f"{'run':>3} {'first /chat 200 (s)':>20} {'ready printed (s)':>18} {'stop (s)':>9} {'lines':>6} {'warnings':>9} {'RSS MiB':>8}")
    for i, r in enumerate(runs):
        print(f"{i + 1:>3} {r['first_answer_s'] or float('nan'):>20.1f} {r['ready_printed_s'] or float('nan'):>18.1f} "
              f"{r['stop_s']:>9.1f} {r['lines']:>6} {len(r['warnings']):>9} {r['rss_mib'] or 0:>8.0f}")
    answered = [r["first_answer_s"] for r in runs if r["first_answer_s"] is not None]
    if answered:
        print(f"median first answer: {statistics.median(answered):.1f} s over {len(answered)} run(s); "
              f"lines printed: {sorted({r['lines'] for r in runs})}")
    out = ROOT / "bench" / "results" / f"{ns.name}.json"
    out.write_text(json.dumps({"command": ns.command, "cpus": os.cpu_count(), "runs": runs}, indent=1) + "\n")
    return 0 if len(answered) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
