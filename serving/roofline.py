"""Model bandwidth utilization (MBU): how close a decode step comes to the memory-bandwidth limit.

A decode step at small batch is memory-bound: it reads every weight once and every cached key and
value of the batch once, and computes little. MBU is the bytes a step must read divided by the step
time, over the device's peak memory bandwidth (the definition in docs/serving.md, "GPU path").
Torch-free arithmetic, so the bench and its tests share one formula.
"""
from __future__ import annotations

# Peak HBM/GDDR bandwidth in GB/s (vendor data sheets), matched by substring of the device name;
# longer names first so "H100 NVL" is not read as "H100".
PEAK_GBPS: dict[str, float] = {
    "H200": 4800, "H100 NVL": 3900, "H100": 3350, "A100-SXM4-80GB": 2039, "A100": 1555,
    "L40S": 864, "A10G": 600, "A10": 600, "L4": 300, "T4": 320, "V100": 900,
}


def peak_gbps(device_name: str) -> float | None:
    """The data-sheet bandwidth of a device named like `torch.cuda.get_device_name()`, or None."""
    for key in sorted(PEAK_GBPS, key=len, reverse=True):
        if key in device_name:
            return PEAK_GBPS[key]
    return None


def decode_bytes(weight_bytes: int, kv_bytes_per_token: int, context_tokens: int) -> int:
    """Bytes one decode step reads: all weights, plus the KV of every position the batch attends over."""
    if weight_bytes < 0 or kv_bytes_per_token < 0 or context_tokens < 0:
        raise ValueError("weight_bytes, kv_bytes_per_token and context_tokens must be >= 0")
    return weight_bytes + kv_bytes_per_token * context_tokens


def mbu(step_s: float, bytes_per_step: int, peak: float) -> float:
    """Achieved bandwidth (bytes_per_step / step_s) over `peak` GB/s, a fraction (1.0 = the limit)."""
    if step_s <= 0 or peak <= 0:
        raise ValueError(f"step_s ({step_s}) and peak ({peak}) must be > 0")
    return bytes_per_step / step_s / (peak * 1e9)
