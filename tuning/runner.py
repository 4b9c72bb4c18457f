"""The tuning flow: config -> inputs -> data -> model -> train -> outputs -> push.

Everything a user can get wrong (config keys, URLs, preset, dataset columns) is checked before the
model is loaded. A run whose output directory already holds a completed adapter skips training
(a pod restarted after training only pushes); a run with checkpoints resumes from the newest.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from contract.tuningjob import CONFIG_PATH, DATA_DIR

from .config import DEFAULT_OUTPUT_DIR, TuningConfig, load_training_config, parse_training_config
from .errors import ConfigError, TuningError
from .outputs import (ADAPTER_FILES, METRICS_FILE, is_completed, mark_completed, neutral_base_reference, push_adapter,
                      rewrite_base_reference, write_metrics)

log = logging.getLogger(__name__)

DEFAULT_CONFIG = CONFIG_PATH  # the tuning Job's mounted ConfigMap (contract.tuningjob)
DEFAULT_DATA = DATA_DIR
DEFAULT_BASE_MODEL = "/workspace/tfs/weights"


@dataclass
class TuneRequest:
    method: str
    config_path: Path | None = None  # None: DEFAULT_CONFIG when it exists, else KAITO's template for the method
    data_dir: Path = Path(DEFAULT_DATA)
    output_dir: Path | None = None
    base_model: str | None = None
    preset: str | None = None
    input_urls: list[str] = field(default_factory=list)
    input_image: str | None = None
    push: str | None = None
    allow_private_urls: bool = False
    max_steps: int | None = None
    max_download_bytes: int | None = None
    docker_config: str | None = None
    training_overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PresetInfo:
    name: str
    repo: str | None
    source: str | None
    target_modules: list[str] | None
    chat_template: str | None
    built_locally: bool = False  # the tiny preset: no source, built on this machine


def lookup_preset(name: str | None) -> PresetInfo | None:
    if not name:
        return None
    import presets
    try:
        preset = presets.get_preset(name)
    except KeyError as err:
        raise ConfigError(f"--preset: {err}") from err
    if not preset.tunable:
        raise ConfigError(f"--preset: preset {name!r} does not support tuning")
    template = presets.chat_template(preset.chat_template) if preset.chat_template else None
    return PresetInfo(name=name, repo=preset.hf_repo, source=preset.source,
                      target_modules=list(preset.lora_target_modules) or None, chat_template=template,
                      built_locally=preset.tiny is not None)


def training_config(request: TuneRequest) -> TuningConfig:
    """--config; else the file a tuning Job mounts; else KAITO's default template for the method,
    read from presets, where the hooks read the tuning ConfigMap's content too."""
    path = request.config_path
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = Path(DEFAULT_CONFIG)
    if path is not None:
        return load_training_config(path, request.method)
    import presets

    log.info("no --config and no %s: using KAITO's default %s template", DEFAULT_CONFIG, request.method)
    return parse_training_config(presets.default_training_config(request.method), request.method)


def output_dir_for(request: TuneRequest, cfg: TuningConfig) -> Path:
    if request.output_dir:
        return Path(request.output_dir)
    configured = cfg.training.get("output_dir") or DEFAULT_OUTPUT_DIR
    return Path(configured) if Path(configured).is_absolute() else Path("/mnt") / configured


def base_model_source(request: TuneRequest, cfg: TuningConfig, preset: PresetInfo | None) -> str:
    if request.base_model:
        return request.base_model
    configured = cfg.model.pretrained_model_name_or_path
    # The preset decides only when the config still names the image's default weights path and no
    # weights were baked in there.
    if preset and configured == DEFAULT_BASE_MODEL and not Path(DEFAULT_BASE_MODEL).is_dir():
        if preset.built_locally:
            from tinymodel import ensure_tiny_model  # the model `kaito up` serves, from the same cache

            return str(ensure_tiny_model())
        if preset.source:
            return preset.source
    return configured


def _resolve(source: str, what: str, docker_config: str | None) -> Path:
    if Path(source).is_dir():
        return Path(source)
    if source.startswith(("/", "./", "../", "~")) or "://" not in source and "/" not in source:
        raise ConfigError(f"{what} {source!r} is not an existing directory, an oci:// or hf:// reference, "
                          "or an image reference")
    import artifacts
    from artifacts.errors import ArtifactError
    log.info("fetching %s %s", what, source)
    try:
        return Path(artifacts.resolve(source, docker_config=docker_config))
    except ArtifactError as err:
        raise TuningError(f"cannot fetch {what} {source!r}: {err}") from err


def prepare_data(request: TuneRequest) -> Path:
    """The directory holding the dataset files (downloaded, pulled from an image, or given)."""
    if request.input_urls and request.input_image:
        raise ConfigError("give either --input-url or --input-image, not both")
    if request.input_urls:
        from .download import DEFAULT_MAX_BYTES, download_urls
        download_urls(request.input_urls, request.data_dir, allow_private=request.allow_private_urls,
                      max_bytes=request.max_download_bytes or DEFAULT_MAX_BYTES)
        return request.data_dir
    if request.input_image:
        return _resolve(request.input_image, "input image", request.docker_config)
    return request.data_dir


def load_dataset_records(data_dir: Path, cfg: TuningConfig):
    from .datafiles import read_records
    from .examples import columns_of, detect_layout, split_records
    records = read_records(data_dir, cfg.dataset.dataset_path, cfg.dataset.dataset_extension)
    layout = detect_layout(columns_of(records), cfg.dataset)
    train_rows, eval_rows = split_records(records, cfg.dataset)
    log.info("dataset: %d records, shape %s (%s); %d train, %d eval", len(records), layout.shape.value,
             ", ".join(layout.columns), len(train_rows), len(eval_rows))
    return layout, train_rows, eval_rows


def _gpu_count() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except ImportError:
        return 0


def _distributed() -> bool:
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def accelerate_command(request: TuneRequest, data_dir: Path, base_path: Path, output_dir: Path,
                       num_processes: int) -> list[str]:
    """One process per GPU on this node (KAITO: accelerate launch --num_processes=<GPUs>)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", f"--num_processes={num_processes}",
           "--num_machines=1", "--machine_rank=0", "--gpu_ids=all", "-m", "tuning",
           "--method", request.method, "--data", str(data_dir), "--base-model", str(base_path),
           "--output", str(output_dir)]
    if request.config_path is not None:
        cmd += ["--config", str(request.config_path)]
    if request.preset:
        cmd += ["--preset", request.preset]
    if request.max_steps is not None:
        cmd += ["--max-steps", str(request.max_steps)]
    return cmd


def _peak_memory_bytes() -> int:
    try:
        import torch
        if torch.cuda.is_available():
            return int(torch.cuda.max_memory_allocated())
    except ImportError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def train_adapter(request: TuneRequest, cfg: TuningConfig, preset: PresetInfo | None, base_path: Path,
                  layout, train_rows, eval_rows, output_dir: Path) -> dict:
    from .batching import TokenizedDataset
    from .examples import encode_records
    from .model import load_peft_model, load_tokenizer
    from .training import train, training_arguments

    tokenizer = load_tokenizer(base_path, cfg, preset.chat_template if preset else None)
    max_len = cfg.dataset.max_seq_length
    train_set = TokenizedDataset(encode_records(train_rows, layout, tokenizer, max_len))
    eval_set = TokenizedDataset(encode_records(eval_rows, layout, tokenizer, max_len)) if eval_rows else None
    args = training_arguments(cfg, output_dir, max_steps=request.max_steps, overrides=request.training_overrides)
    checkpointing = bool(getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing)
    model = load_peft_model(base_path, cfg, gradient_checkpointing=checkpointing,
                            preset_modules=preset.target_modules if preset else None)
    result = train(model, tokenizer, cfg, train_set, eval_set, output_dir, max_steps=request.max_steps,
                   overrides=request.training_overrides)
    return {
        "steps": result.steps,
        "train_loss": result.train_loss,
        "first_loss": result.loss_history[0][1] if result.loss_history else None,
        "eval_loss": result.eval_loss,
        "loss_history": result.loss_history,
        "train_tokens": result.tokens,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "duration_seconds": round(result.duration_seconds, 3),
        "train_examples": len(train_set),
        "eval_examples": len(eval_set) if eval_set else 0,
        "resumed_from": result.resumed_from,
        "peak_memory_bytes": _peak_memory_bytes(),
        "is_main_process": result.is_main_process,
    }


def run(request: TuneRequest) -> dict:
    """Run the whole flow; return the metrics written to the output directory."""
    started = time.monotonic()
    cfg = training_config(request)
    preset = lookup_preset(request.preset)
    if request.input_urls:
        from .urlsafety import check_url
        for url in request.input_urls:
            check_url(url, allow_private=request.allow_private_urls)
    output_dir = output_dir_for(request, cfg)
    base_source = base_model_source(request, cfg, preset)
    if is_completed(output_dir):
        log.info("%s already holds a completed adapter; skipping training", output_dir)
        metrics = _read_metrics(output_dir)
    else:
        data_dir = prepare_data(request)
        layout, train_rows, eval_rows = load_dataset_records(data_dir, cfg)
        base_path = _resolve(base_source, "base model", request.docker_config)
        output_dir.mkdir(parents=True, exist_ok=True)
        gpus = _gpu_count()
        if gpus > 1 and not _distributed():
            cmd = accelerate_command(request, data_dir, base_path, output_dir, gpus)
            log.info("%d GPUs: launching one training process per GPU with accelerate", gpus)
            code = subprocess.call(cmd)
            if code != 0:
                raise TuningError(f"distributed training exited with status {code}")
            metrics = _read_metrics(output_dir)
            base_ref = neutral_base_reference(base_source, preset.name if preset else None,
                                              preset.repo if preset else None)
            rewrite_base_reference(output_dir, base_ref)
            metrics["base_model"] = base_ref
            write_metrics(output_dir, metrics)
        else:
            metrics = train_adapter(request, cfg, preset, base_path, layout, train_rows, eval_rows, output_dir)
            if not metrics.pop("is_main_process"):
                return metrics
            base_ref = neutral_base_reference(base_source, preset.name if preset else None,
                                              preset.repo if preset else None)
            rewrite_base_reference(output_dir, base_ref)
            metrics.update(method=request.method, preset=request.preset, base_model=base_ref,
                           adapter_bytes=sum((output_dir / f).stat().st_size for f in ADAPTER_FILES),
                           total_seconds=round(time.monotonic() - started, 3))
            write_metrics(output_dir, metrics)
            mark_completed(output_dir)
            log.info("adapter written to %s: %d steps, train loss %s, eval loss %s, %.0f tokens/s", output_dir,
                     metrics["steps"], _fmt(metrics["train_loss"]), _fmt(metrics["eval_loss"]),
                     metrics["tokens_per_second"])
    if request.push:
        metrics["pushed"] = {"ref": request.push, "digest": push_adapter(output_dir, request.push,
                                                                           docker_config=request.docker_config)}
        write_metrics(output_dir, metrics)
    return metrics


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _read_metrics(output_dir: Path) -> dict:
    path = output_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}

