"""Load a base model and its tokenizer from a local directory or any artifacts source (adapters: serving/adapters.py)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLoadError

log = logging.getLogger(__name__)

# Used only when neither the tokenizer nor the preset brings a chat template.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_DTYPES = {"float32", "float16", "bfloat16"}


@dataclass
class LoadedModel:
    model: object  # a transformers causal LM (adapters attach at runtime: serving/adapters.py)
    tokenizer: object
    context_length: int
    chat_template: str
    device: str


def resolve_source(source: str, docker_config: str | None = None) -> Path:
    """A local directory is used as is; oci:// and hf:// sources go through the delivery library."""
    p = Path(source).expanduser()
    if p.is_dir():
        return p
    if source.startswith(("/", ".", "~")) and "://" not in source:
        raise ModelLoadError(f"model directory {source} does not exist")
    try:
        import artifacts  # lazy: only non-local sources need it
        return Path(artifacts.resolve(source, docker_config=docker_config))
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - any delivery failure becomes one plain line
        raise ModelLoadError(f"cannot fetch model weights from {source}: {e}") from e


def load_model(source: str, *, dtype: str | None = None, trust_remote_code: bool = False,
               device: str = "cpu", max_model_len: int | None = None,
               chat_template: str | None = None) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_source(source)
    if dtype is not None and dtype not in _DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    torch_dtype = getattr(torch, dtype) if dtype else torch.float32
    device_map = _device_map(path, device, dtype or "float32", trust_remote_code)  # refuses before loading
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                                     **({"device_map": device_map} if device_map else {}))
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot load a causal LM from {path}: {e}") from e
    if device_map is None:
        model.to(device)
    model.eval()
    ctx = max_model_len or getattr(model.config, "max_position_embeddings", None) or 2048
    template = getattr(tok, "chat_template", None) or chat_template or FALLBACK_CHAT_TEMPLATE
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return LoadedModel(model=model, tokenizer=tok, context_length=int(ctx), chat_template=template,
                       device=device)


def _device_map(path: Path, device: str, dtype: str, trust_remote_code: bool) -> dict | None:
    """On a node with several GPUs, split the model across all of them (serving/placement.py)."""
    if not str(device).startswith("cuda"):
        return None
    from transformers import AutoConfig

    from . import placement

    gpus, per_gpu = placement.visible_gpus()
    if gpus < 2:
        return None
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    plan = placement.plan(config, gpus=gpus, bytes_per_gpu=per_gpu, dtype=dtype)
    log.info("placing the model on %d GPUs: %.1f GiB of weights", plan.gpus_used, plan.weight_bytes / placement.GIB)
    return plan.device_map
