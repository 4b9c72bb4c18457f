"""`kaito tune` / `python -m tuning`: LoRA or QLoRA fine-tuning, in a Job or against local directories.

The defaults are the paths the tuning Job mounts, so the Job passes only what differs:
  python -m tuning --preset P --method qlora --config /mnt/config/training_config.yaml \\
      --base-model hf://... --output /mnt/results --input-url URL --push REGISTRY/REPO:TAG
Locally:  kaito tune --method lora --base-model ./model --data ./data --output ./out   (KAITO's default config)
          kaito tune --preset tiny --data ./data --output ./out                     (the locally built tiny model)
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from contract.tuningjob import add_job_arguments

from .errors import TuningError
from .runner import TuneRequest

log = logging.getLogger("tuning")


def build_parser(prog: str = "kaito tune") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Fine-tune a LoRA/QLoRA adapter (KAITO training_config.yaml).")
    add_job_arguments(p)  # what the tuning Job passes (contract.tuningjob): one definition for both ends
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    p.add_argument("--max-download-bytes", type=int, default=None, help="size limit per input URL (default 20 GiB)")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="allow loopback/private input URLs (tests against a local server only)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    return p


def request_from_args(args: argparse.Namespace) -> TuneRequest:
    return TuneRequest(
        method=args.method, config_path=Path(args.config) if args.config else None, data_dir=Path(args.data),
        output_dir=Path(args.output) if args.output else None, base_model=args.base_model, preset=args.preset,
        input_urls=list(args.input_url), input_image=args.input_image, push=args.push,
        allow_private_urls=args.allow_private_urls, max_steps=args.max_steps,
        max_download_bytes=args.max_download_bytes, docker_config=_docker_config())


def _docker_config() -> str | None:
    """$DOCKER_CONFIG when it holds a config.json (the mounted secret); else anonymous access."""
    folder = os.environ.get("DOCKER_CONFIG")
    return folder if folder and (Path(folder) / "config.json").is_file() else None


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning")


def main(argv: list[str] | None = None, prog: str = "kaito tune") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.max_steps is not None and args.max_steps < 1:
        build_parser(prog).error("--max-steps must be at least 1")
    _configure_logging(args.log_level)
    from .runner import run
    try:
        run(request_from_args(args))
    except TuningError as err:
        log.error("%s", err)
        return 1
    return 0
