"""What the pull/push/mirror subcommands share: logging to stderr, one-line errors, exit codes."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from .errors import ArtifactError


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--docker-config", metavar="PATH", help="docker config.json (or its directory) with registry credentials; default $DOCKER_CONFIG/config.json, then ~/.docker/config.json")
    parser.add_argument("--insecure", action="store_true", default=None, help="use plain HTTP for this registry (also: env KAITO_INSECURE_REGISTRIES=host:port,...)")
    parser.add_argument("--cache-dir", metavar="DIR", help="cache directory (default $KAITO_CACHE_DIR, else ~/.cache/kaito)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def add_hf_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hf-token-file", metavar="PATH", help="file holding the Hugging Face token (default: env HF_TOKEN)")


def hf_token(args: argparse.Namespace) -> str | None:
    """The token from --hf-token-file; None lets the hub client fall back to $HF_TOKEN."""
    from pathlib import Path

    return Path(args.hf_token_file).read_text().strip() if args.hf_token_file else None


def run(prog: str, args: argparse.Namespace, action: Callable[[], str | None]) -> int:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        out = action()
    except ArtifactError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run it again to resume", file=sys.stderr)
        return 130
    if out:
        print(out)
    return 0
