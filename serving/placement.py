"""Where a model's layers go when it needs more than one GPU: accelerate's planner, checked first.

The hooks give a replica every GPU of its node (gpus_per_replica); a preset such as falcon-40b
(~84 GB in bf16) only fits across two of them. `plan()` builds the model on the meta device (no
memory), gives each GPU a `max_memory` of its size minus the KV cache share and a fixed headroom
for activations and the CUDA context, and asks accelerate's `infer_auto_device_map` to place whole
decoder layers (the model's `_no_split_modules`), balanced across the GPUs. A plan that would spill anything to the CPU or
disk is refused before any weight is read, with the numbers. The KV cache then lives beside each
layer: our cache layers allocate on the device of the keys they are given (serving/kvcache.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ModelLoadError

GIB = 1 << 30
HEADROOM_BYTES = 2 * GIB  # per GPU: CUDA context, allocator slack, activations of one step
KV_FRACTION = 0.10  # of each GPU's memory, kept for the KV cache when no budget is given


@dataclass(frozen=True)
class Placement:
    device_map: dict[str, int]
    max_memory: dict[int, int]  # bytes per GPU index given to the weights
    weight_bytes: int
    kv_bytes_per_gpu: int

    @property
    def gpus_used(self) -> int:
        return len(set(self.device_map.values()))


def plan(config, *, gpus: int, bytes_per_gpu: int, dtype: str = "bfloat16",
         kv_bytes_per_gpu: int | None = None) -> Placement:
    """Plan the device map of `config`'s causal LM over `gpus` GPUs of `bytes_per_gpu` each."""
    import torch
    from accelerate import init_empty_weights
    from accelerate.utils import compute_module_sizes, get_balanced_memory, infer_auto_device_map
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    weights = compute_module_sizes(model, dtype=torch_dtype)[""]
    kv = int(bytes_per_gpu * KV_FRACTION) if kv_bytes_per_gpu is None else kv_bytes_per_gpu
    usable = bytes_per_gpu - kv - HEADROOM_BYTES
    summary = (f"{weights / GIB:.1f} GiB of {dtype} weights; {gpus} GPU(s) x {bytes_per_gpu / GIB:.1f} GiB "
               f"leave {max(0, usable) / GIB:.1f} GiB each after {kv / GIB:.1f} GiB of KV cache and "
               f"{HEADROOM_BYTES / GIB:.0f} GiB of headroom")
    if usable <= 0 or weights > gpus * usable:
        raise ModelLoadError(f"the model does not fit: {summary}")
    no_split = list(model._no_split_modules or [])
    # balanced (as device_map="balanced"): every GPU gets a share of layers, so of the KV cache too
    max_memory = get_balanced_memory(model, max_memory={i: usable for i in range(gpus)}, dtype=torch_dtype,
                                     no_split_module_classes=no_split)
    device_map = infer_auto_device_map(model, max_memory=max_memory, dtype=torch_dtype,
                                       no_split_module_classes=no_split)
    spilled = sorted({str(d) for d in device_map.values() if not isinstance(d, int)})
    if spilled:  # whole layers did not pack into the GPUs even though the total would
        raise ModelLoadError(f"the model does not fit without offloading to {spilled}: {summary}")
    return Placement(device_map=dict(device_map), max_memory=max_memory, weight_bytes=int(weights),
                     kv_bytes_per_gpu=kv)


def visible_gpus():
    """(count, bytes of the smallest) of the GPUs this process sees."""
    import torch

    n = torch.cuda.device_count()
    return n, min((torch.cuda.get_device_properties(i).total_memory for i in range(n)), default=0)
