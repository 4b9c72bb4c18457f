"""The tuning Job's interface: the paths the Job mounts and the arguments its entrypoint takes.

The hooks build the Job's container command with `TuningJobArgs.argv()`; the entrypoint
(`python -m tuning`, tuning/cli.py) parses the same flags with `add_job_arguments`, so a flag
exists at both ends or at neither. Defaults are the Job's mount paths: the Job passes only what
differs, and `kaito tune` on a laptop overrides them.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["CONFIG_DIR", "CONFIG_KEY", "CONFIG_PATH", "DATA_DIR", "RESULTS_DIR", "PUSH_SECRET_DIR", "METHODS",
           "ENTRYPOINT", "TuningJobArgs", "add_job_arguments"]

CONFIG_DIR = "/mnt/config"
#: Key of the training config in the tuning ConfigMap (KAITO's name).
CONFIG_KEY = "training_config.yaml"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_KEY}"
#: The dataset directory: a volume, an image pulled by an init container, or where URL downloads land.
DATA_DIR = "/mnt/data"
#: Checkpoints and the adapter; an output volume keeps it across pod replacements.
RESULTS_DIR = "/mnt/results"
#: The mounted push Secret, a DOCKER_CONFIG directory.
PUSH_SECRET_DIR = "/mnt/push-secret"
METHODS = ("lora", "qlora")
ENTRYPOINT = ("python", "-m", "tuning")


@dataclass(frozen=True)
class TuningJobArgs:
    """What the Job asks of the tuning entrypoint (the flags of `add_job_arguments`)."""
    method: str = "lora"
    preset: Optional[str] = None
    config: Optional[str] = CONFIG_PATH
    output: Optional[str] = RESULTS_DIR
    base_model: Optional[str] = None
    input_urls: tuple[str, ...] = field(default_factory=tuple)
    input_image: Optional[str] = None
    data: Optional[str] = None        # None: the entrypoint's default, DATA_DIR
    push: Optional[str] = None

    def argv(self) -> list[str]:
        out = [*ENTRYPOINT]
        if self.preset:
            out += ["--preset", self.preset]
        out += ["--method", self.method]
        for flag, value in (("--config", self.config), ("--output", self.output), ("--base-model", self.base_model)):
            if value:
                out += [flag, value]
        for url in self.input_urls:
            out += ["--input-url", url]
        for flag, value in (("--input-image", self.input_image), ("--data", self.data), ("--push", self.push)):
            if value:
                out += [flag, value]
        return out


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """The flags the Job passes, with the help the entrypoint prints; `TuningJobArgs.argv` writes them."""
    p.add_argument("--method", choices=METHODS, default="lora", help="tuning method (default: lora)")
    p.add_argument("--config", default=None,
                   help=f"KAITO training_config.yaml (default: {CONFIG_PATH} when it exists, else KAITO's "
                        "default template for --method, the one the hooks put in the tuning ConfigMap)")
    p.add_argument("--data", default=DATA_DIR,
                   help=f"dataset directory or file; URL downloads land here (default: {DATA_DIR})")
    p.add_argument("--output", default=None,
                   help="output directory for checkpoints and the adapter (default: TrainingArguments.output_dir, "
                        f"else {RESULTS_DIR})")
    p.add_argument("--base-model", default=None,
                   help="base model: directory, oci:// or hf:// reference (default: ModelConfig."
                        "pretrained_model_name_or_path, /workspace/tfs/weights, or the preset's source)")
    p.add_argument("--preset", default=None,
                   help="preset name: LoRA target modules, chat template, adapter base name; 'tiny' with no "
                        "--base-model tunes the locally built tiny model (default: none)")
    p.add_argument("--input-url", action="append", default=[], metavar="URL",
                   help="dataset URL to download (http/https, public addresses only); repeatable")
    p.add_argument("--input-image", default=None, metavar="REF", help="OCI image/artifact holding the dataset files")
    p.add_argument("--push", default=None, metavar="REF",
                   help="push the adapter to this OCI reference (credentials from $DOCKER_CONFIG/config.json)")
