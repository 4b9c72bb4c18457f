"""Load the base model and tokenizer and attach the LoRA adapter (QLoRA: on a 4/8-bit base)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .config import TuningConfig
from .errors import ModelLoadError
from .examples import FALLBACK_CHAT_TEMPLATE

log = logging.getLogger(__name__)


def _torch_dtype(name: str | None):
    import torch
    if name in (None, "auto"):
        return "auto"
    return getattr(torch, name)


def load_tokenizer(path: Path, cfg: TuningConfig, preset_template: str | None = None):
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, trust_remote_code=cfg.model.trust_remote_code, local_files_only=True)
    except Exception as err:
        raise ModelLoadError(f"cannot load the tokenizer from {path}: {err}") from err
    if cfg.model.chat_template:
        tokenizer.chat_template = cfg.model.chat_template
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = preset_template or FALLBACK_CHAT_TEMPLATE
        log.info("the tokenizer has no chat template; using %s", "the preset's" if preset_template else "a generic one")
    if tokenizer.pad_token_id is None:  # as KAITO does: pad with EOS
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _device_map(cfg: TuningConfig):
    import torch
    if not torch.cuda.is_available():
        return None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one full copy per process under accelerate/DDP
        return {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return cfg.model.device_map


def target_modules(cfg: TuningConfig, preset_modules: list[str] | None,
                   architecture: str | None = None) -> list[str] | str | None:
    """LoraConfig.target_modules, else KAITO's DEFAULT_TARGET_MODULES env, else the preset's, else those the
    catalog gives the model's architecture (a --base-model with no --preset), else peft's own default."""
    if cfg.lora.get("target_modules"):
        return cfg.lora["target_modules"]
    env = os.environ.get("DEFAULT_TARGET_MODULES")
    if env:
        return [m.strip() for m in env.split(",") if m.strip()]
    if preset_modules:
        return list(preset_modules)
    return catalog_modules(architecture)


def catalog_modules(architecture: str | None) -> list[str] | None:
    """The LoRA target modules the preset catalog lists for this transformers architecture class."""
    if not architecture:
        return None
    import presets

    for preset in presets.list_presets():
        if preset.architecture == architecture and preset.lora_target_modules:
            return list(preset.lora_target_modules)
    return None


def load_peft_model(path: Path, cfg: TuningConfig, *, gradient_checkpointing: bool,
                    preset_modules: list[str] | None = None):
    """The trainable model: base (quantized for qlora) wrapped by peft with a fresh LoRA adapter."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = dict(
        dtype=_torch_dtype(cfg.model.effective_dtype),
        trust_remote_code=cfg.model.trust_remote_code,
        local_files_only=True,
        device_map=_device_map(cfg),
    )
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    if cfg.quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(**cfg.quantization)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as err:
        raise ModelLoadError(f"cannot load the base model from {path}: {err}") from err
    model.config.use_cache = False
    if cfg.quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.enable_input_require_grads()  # so checkpointed blocks see inputs that require grad
    architecture = (getattr(model.config, "architectures", None) or [None])[0]
    lora = {**cfg.lora, "target_modules": target_modules(cfg, preset_modules, architecture), "task_type": "CAUSAL_LM"}
    try:
        model = get_peft_model(model, LoraConfig(**lora))
    except ValueError as err:
        raise ModelLoadError(f"cannot attach LoRA (target_modules={lora['target_modules']}): {err}") from err
    trainable, total = model.get_nb_trainable_parameters()
    log.info("model %s loaded (%s%s); LoRA r=%s trains %d of %d parameters (%.3f%%)", path.name,
             kwargs["dtype"] if kwargs["dtype"] == "auto" else str(kwargs["dtype"]).removeprefix("torch."),
             ", 4-bit" if cfg.quantization.get("load_in_4bit") else ", 8-bit" if cfg.quantized else "",
             model.peft_config["default"].r, trainable, total, 100 * trainable / max(total, 1))
    return model
