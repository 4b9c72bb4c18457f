"""`kaito pull SOURCE DIR`: fetch oci://, a bare image reference, hf:// or a local path into DIR."""
from __future__ import annotations

import argparse

from ._cli import add_common, add_hf_token, hf_token, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaito pull",
        description="Fetch SOURCE into DIR: oci://REGISTRY/REPO:TAG (or @sha256:...), a bare image reference "
        "(myacr.azurecr.io/adapter:0.0.1), hf://ORG/REPO@REVISION, or a local directory. Files are cached; DIR is "
        "written atomically and carries a .kaito-complete marker.",
    )
    parser.add_argument("source")
    parser.add_argument("dir")
    parser.add_argument("--jobs", type=int, default=None, help="parallel blob downloads (default 2 per CPU, 4 to 8; env KAITO_PULL_JOBS)")
    add_hf_token(parser)
    add_common(parser)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    def action() -> str:
        from . import parse_source, pull, resolve
        from .reference import OciReference

        source = parse_source(args.source)
        if isinstance(source, OciReference):
            result = pull(source, args.dir, cache_dir=args.cache_dir, docker_config=args.docker_config, insecure=args.insecure, jobs=args.jobs)
            return f"{result.path} {result.digest}"
        return str(resolve(args.source, dest=args.dir, cache_dir=args.cache_dir, docker_config=args.docker_config, insecure=args.insecure, hf_token=hf_token(args)))

    return run("kaito pull", args, action)
