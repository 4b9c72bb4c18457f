"""A killed Job resumes: SIGKILL the process right after its first checkpoint, rerun, same final step."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MAX_STEPS = 40
REPO = Path(__file__).resolve().parents[3]


def _command(config, tiny_model, data, out):
    return [sys.executable, "-m", "tuning", "--method", "lora", "--config", str(config), "--base-model",
            str(tiny_model), "--preset", "tiny", "--data", str(data), "--output", str(out),
            "--max-steps", str(MAX_STEPS)]


def test_killed_run_resumes_from_its_checkpoint(tiny_model, tuning_config, tmp_path):
    from tests.integration.tuning.conftest import chat_rows

    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.Table.from_pylist(chat_rows(64)), data / "train.parquet")
    config = tuning_config(tmp_path / "lora.yaml", "lora", save_steps=5, logging_steps=5)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}

    first = subprocess.Popen(_command(config, tiny_model, data, out), stderr=subprocess.PIPE, text=True, env=env,
                             cwd=REPO)
    seen = []
    deadline = time.monotonic() + 120
    for line in first.stderr:
        seen.append(line)
        if "checkpoint saved at step" in line:
            first.send_signal(signal.SIGKILL)  # what a node failure or eviction does to the pod
            break
        assert time.monotonic() < deadline, "".join(seen)
    first.wait()
    assert first.returncode == -signal.SIGKILL, "".join(seen)
    assert not (out / "fine_tuning_completed.txt").exists()
    saved = int(re.search(r"checkpoint saved at step (\d+)", seen[-1]).group(1))
    assert saved < MAX_STEPS

    second = subprocess.run(_command(config, tiny_model, data, out), capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = re.search(r"resuming from checkpoint checkpoint-(\d+) \(step (\d+)\)", second.stderr)
    assert resumed, second.stderr[-3000:]
    assert int(resumed.group(1)) >= saved
    metrics = json.loads((out / "tuning_metrics.json").read_text())
    assert metrics["steps"] == MAX_STEPS and metrics["resumed_from"] == f"checkpoint-{resumed.group(1)}"
    steps_logged = [step for step, _ in metrics["loss_history"]]
    assert steps_logged == list(range(5, MAX_STEPS + 1, 5))  # one history across both runs
    assert (out / "fine_tuning_completed.txt").exists()
