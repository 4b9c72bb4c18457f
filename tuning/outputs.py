"""What a finished run leaves behind, and pushing it.

The output directory gets the adapter (adapter_config.json with a neutral base reference, and
adapter_model.safetensors), tuning_metrics.json, and KAITO's fine_tuning_completed.txt marker.
The pushed artifact holds exactly the two adapter files, KAITO's adapter image content.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .errors import OutputError

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
COMPLETED_MARKER = "fine_tuning_completed.txt"
METRICS_FILE = "tuning_metrics.json"


def neutral_base_reference(base_model: str, preset_name: str | None, preset_repo: str | None) -> str:
    """What adapter_config.json names as its base: never a path that only existed in this pod."""
    if preset_repo:
        return preset_repo
    if preset_name:
        return preset_name
    if base_model.startswith("hf://"):
        return base_model[len("hf://"):].split("@", 1)[0]
    if "://" in base_model:
        return base_model
    return Path(base_model.rstrip("/")).name or base_model


def rewrite_base_reference(output_dir: Path, base: str) -> None:
    path = output_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_metrics(output_dir: Path, metrics: dict) -> Path:
    path = output_dir / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def mark_completed(output_dir: Path) -> None:
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (output_dir / COMPLETED_MARKER).write_text(f"Fine-Tuning completed at {stamp}\n")


def is_completed(output_dir: Path) -> bool:
    return (output_dir / COMPLETED_MARKER).is_file() and all((output_dir / f).is_file() for f in ADAPTER_FILES)


def push_adapter(output_dir: Path, ref: str, *, docker_config: str | None = None) -> str:
    """Push the adapter files as an OCI artifact; return the manifest digest."""
    missing = [f for f in ADAPTER_FILES if not (output_dir / f).is_file()]
    if missing:
        raise OutputError(f"cannot push: {', '.join(missing)} missing from {output_dir}")
    try:
        import artifacts
        from artifacts.errors import ArtifactError
    except ImportError as err:
        raise OutputError("pushing needs the delivery library (artifacts package)") from err
    with tempfile.TemporaryDirectory(prefix="kaito-adapter-") as staging:
        for name in ADAPTER_FILES:
            shutil.copy2(output_dir / name, Path(staging) / name)
        log.info("pushing adapter to %s", ref)
        try:
            digest = artifacts.push(staging, ref, docker_config=docker_config)
        except ArtifactError as err:
            raise OutputError(f"pushing the adapter to {ref} failed: {err}") from err
    log.info("pushed adapter to %s (%s)", ref, digest)
    return str(digest)
