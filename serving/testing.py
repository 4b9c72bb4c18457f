"""Builders for tests and benchmarks: LoRA adapters with non-zero weights over a tiny model."""
from __future__ import annotations

from pathlib import Path

_TARGETS = {"phi3": ["qkv_proj", "o_proj"], "llama": ["q_proj", "v_proj"]}


def build_adapter(base_dir: str | Path, out_dir: str | Path, *, seed: int = 1, r: int = 4,
                  scale: float = 0.5) -> Path:
    """A LoRA adapter whose lora_B is random (peft initializes it to zero), so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    arch = "phi3" if base.config.model_type == "phi3" else "llama"
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=_TARGETS[arch], task_type="CAUSAL_LM",
                     init_lora_weights=True)
    model = get_peft_model(base, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    out = Path(out_dir)
    model.save_pretrained(out)
    return out
