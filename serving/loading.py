"""Load a base model, its tokenizer and LoRA adapters from a local directory or any artifacts source."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelLoadError

log = logging.getLogger(__name__)

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
COMBINED = "combined"  # KAITO's /chat default: all adapters merged by strength

# Used only when neither the tokenizer nor the preset brings a chat template.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_DTYPES = {"float32", "float16", "bfloat16"}


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    path: str  # the contract's AdapterArg.source: a local directory, oci:// or hf:// (resolve_source)
    strength: float = 1.0
    docker_config: str | None = None  # the adapter's registry credentials (AdapterArg.docker_config)


@dataclass
class LoadedModel:
    model: object  # a transformers causal LM, or a peft PeftModel wrapping one
    tokenizer: object
    context_length: int
    chat_template: str
    device: str
    adapters: dict[str, AdapterSpec] = field(default_factory=dict)

    @property
    def is_peft(self) -> bool:
        return bool(self.adapters)

    def peft_adapter_map(self) -> dict[str | None, str] | None:
        """Sequence.adapter -> peft adapter name; None (the /chat default) is the combined adapter."""
        if not self.adapters:
            return None
        return {None: COMBINED, BASE: BASE, **{n: peft_name(i) for i, n in enumerate(self.adapters)}}


def peft_name(index: int) -> str:
    """peft's key for the index-th adapter: served names may hold '.', which torch module names cannot."""
    return f"adapter_{index}"


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
               adapters: list[AdapterSpec] = (), device: str = "cpu", max_model_len: int | None = None,
               chat_template: str | None = None, combination_type: str = "cat") -> LoadedModel:
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
    if adapters:
        model = _attach_adapters(model, list(adapters), combination_type)
    ctx = max_model_len or getattr(model.config, "max_position_embeddings", None) or 2048
    template = getattr(tok, "chat_template", None) or chat_template or FALLBACK_CHAT_TEMPLATE
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return LoadedModel(model=model, tokenizer=tok, context_length=int(ctx), chat_template=template,
                       device=device, adapters={a.name: a for a in adapters})


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


def _attach_adapters(model, adapters: list[AdapterSpec], combination_type: str):
    from peft import PeftModel

    names = [a.name for a in adapters]
    if len(set(names)) != len(names) or BASE in names or COMBINED in names:
        raise ModelLoadError(f"adapter names must be unique and not {BASE!r}/{COMBINED!r}: {names}")
    try:
        first, *rest = adapters
        peft_model = PeftModel.from_pretrained(model, str(resolve_source(first.path, first.docker_config)), adapter_name=peft_name(0))
        for i, a in enumerate(rest, start=1):
            peft_model.load_adapter(str(resolve_source(a.path, a.docker_config)), adapter_name=peft_name(i))
        # KAITO's /chat default: one adapter combined by strength ("cat" is exact and fast; svd is slow)
        peft_model.add_weighted_adapter([peft_name(i) for i in range(len(adapters))],
                                        [a.strength for a in adapters], COMBINED,
                                        combination_type=combination_type)
        peft_model.set_adapter(COMBINED)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot load LoRA adapters {names}: {e}") from e
    return peft_model.eval()
