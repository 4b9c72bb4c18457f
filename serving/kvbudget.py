"""How many bytes of KV cache a replica may hold, and how many token positions that is.

One token position costs keys + values for every layer: 2 x layers x kv_heads x head_dim x the
dtype's size. The budget in bytes is the `kv_cache_bytes` setting when given; otherwise, measured
after the model is loaded, a fraction of what is left: on a GPU `torch.cuda.mem_get_info()`'s free
memory (the rest is for activations and the allocator), on a CPU the kernel's MemAvailable (the
machine is shared with other processes, so a smaller fraction).
"""
from __future__ import annotations

from dataclasses import dataclass

GPU_FRACTION = 0.85
CPU_FRACTION = 0.25
CPU_FALLBACK_BYTES = 2 << 30  # when MemAvailable cannot be read
PREFIX_FRACTION = 0.125  # of the budget, kept for the prefix cache


@dataclass(frozen=True)
class KVBudget:
    bytes_per_token: int
    total_bytes: int

    @property
    def prefix_bytes(self) -> int:
        return int(self.total_bytes * PREFIX_FRACTION)

    @property
    def tokens(self) -> int:
        """Token positions the running batch may reserve (the prefix cache's share taken out)."""
        return max(1, (self.total_bytes - self.prefix_bytes) // self.bytes_per_token)


def bytes_per_token(config, dtype_bytes: int) -> int:
    """KV bytes of one token position, from a transformers config."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = cfg.num_hidden_layers
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def free_bytes(device: str) -> int:
    """A safe share of the memory still free on `device` (call after loading the weights)."""
    if str(device).startswith("cuda"):
        import torch

        # a model split across GPUs keeps each layer's KV on that layer's GPU: count them all
        free = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
        return int(free * GPU_FRACTION)
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return CPU_FALLBACK_BYTES
    return int(avail * CPU_FRACTION)


def plan(config, dtype_bytes: int, device: str, setting: int | None = None) -> KVBudget:
    return KVBudget(bytes_per_token(config, dtype_bytes), setting if setting is not None else free_bytes(device))
