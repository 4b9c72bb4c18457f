"""`kaito mirror hf://ORG/REPO@REV oci://REGISTRY/REPO:TAG`: host a model's weights in your own registry."""
from __future__ import annotations

import argparse

from ._cli import add_common, add_hf_token, hf_token, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaito mirror",
        description="Download a Hugging Face repo at a revision (verified) and push it to an OCI registry as a "
        "model artifact, the way KAITO hosts preset weights; prints the manifest digest.",
    )
    parser.add_argument("source", help="hf://ORG/REPO[@REVISION]")
    parser.add_argument("ref", help="oci://REGISTRY/REPO:TAG")
    parser.add_argument("--exclude", action="append", default=None, metavar="GLOB", help="skip repo files matching GLOB (repeatable), e.g. 'original/*'")
    add_hf_token(parser)
    add_common(parser)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    def action() -> str:
        from . import mirror

        return mirror(args.source, args.ref, docker_config=args.docker_config, insecure=args.insecure, hf_token=hf_token(args), cache_dir=args.cache_dir, exclude=args.exclude)

    return run("kaito mirror", args, action)
