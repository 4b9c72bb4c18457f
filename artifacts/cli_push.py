"""`kaito push DIR oci://REGISTRY/REPO:TAG`: push a directory as an OCI artifact, print its digest."""
from __future__ import annotations

import argparse

from ._cli import add_common, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaito push",
        description="Push every file under DIR as one layer of an OCI artifact at REF; prints the manifest digest.",
    )
    parser.add_argument("dir")
    parser.add_argument("ref", help="oci://REGISTRY/REPO:TAG or REGISTRY/REPO:TAG")
    parser.add_argument("--artifact-type", default="adapter", help="adapter (default), model, or a media type")
    parser.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE", help="manifest annotation (repeatable)")
    add_common(parser)
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    annotations = {}
    for item in args.annotation:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--annotation expects KEY=VALUE, got {item!r}")
        annotations[key] = value

    def action() -> str:
        from . import push

        return push(args.dir, args.ref, docker_config=args.docker_config, insecure=args.insecure, artifact_type=args.artifact_type, annotations=annotations or None)

    return run("kaito push", args, action)
