"""`kaito pull SOURCE DIR`: fetch oci://, a bare image reference, hf:// or a local path into DIR.

`kaito pull --from-serve-config FILE` fetches every adapter a Serve config lists into the cache
instead (the serving pod's one prefetch init container, whose command does not depend on the
adapter list): local directories are left alone, and the first adapter that cannot be fetched
fails the command with its name and source.
"""
from __future__ import annotations

import argparse

from contract.argv import FROM_SERVE_CONFIG

from ._cli import add_common, add_hf_token, hf_token, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaito pull",
        description="Fetch SOURCE into DIR: oci://REGISTRY/REPO:TAG (or @sha256:...), a bare image reference "
        "(myacr.azurecr.io/adapter:0.0.1), hf://ORG/REPO@REVISION, or a local directory. Files are cached; DIR is "
        f"written atomically and carries a .kaito-complete marker. With {FROM_SERVE_CONFIG} FILE: fetch every "
        "adapter that Serve config lists into the cache.",
    )
    parser.add_argument("source", nargs="?")
    parser.add_argument("dir", nargs="?")
    parser.add_argument(FROM_SERVE_CONFIG, metavar="FILE", dest="serve_config", default=None,
                        help="a Serve config (the pod's mounted ConfigMap): fetch its adapters into the cache")
    parser.add_argument("--jobs", type=int, default=None, help="parallel blob downloads (default 2 per CPU, 4 to 8; env KAITO_PULL_JOBS)")
    add_hf_token(parser)
    add_common(parser)
    return parser


def _prefetch(path: str, args: argparse.Namespace) -> str:
    from contract.serveargs import ServeArgsError
    from contract.serveconfig import load_serve_config

    from . import parse_source, resolve
    from .errors import ArtifactError
    from .reference import LocalSource

    try:
        config = load_serve_config(path)
    except ServeArgsError as e:
        raise ArtifactError(str(e)) from e
    lines = []
    for app in config.applications:
        for adapter in app.args.adapters:
            if isinstance(parse_source(adapter.source), LocalSource):
                continue  # a mounted volume: serving reads it in place
            try:
                got = resolve(adapter.source, cache_dir=args.cache_dir,
                              docker_config=adapter.docker_config or args.docker_config, insecure=args.insecure,
                              hf_token=hf_token(args))
            except ArtifactError as e:
                raise type(e)(f"adapter {adapter.name} ({adapter.source}): {e}") from e
            lines.append(f"{adapter.name} {got}")
    return "\n".join(lines) or f"{path}: no adapters to fetch"


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.serve_config is not None and (args.source or args.dir):
        parser.error(f"{FROM_SERVE_CONFIG} takes no SOURCE or DIR")
    if args.serve_config is None and not (args.source and args.dir):
        parser.error(f"SOURCE and DIR are required (or {FROM_SERVE_CONFIG} FILE)")

    def action() -> str:
        if args.serve_config is not None:
            return _prefetch(args.serve_config, args)
        from . import parse_source, pull, resolve
        from .reference import OciReference

        source = parse_source(args.source)
        if isinstance(source, OciReference):
            result = pull(source, args.dir, cache_dir=args.cache_dir, docker_config=args.docker_config, insecure=args.insecure, jobs=args.jobs)
            return f"{result.path} {result.digest}"
        return str(resolve(args.source, dest=args.dir, cache_dir=args.cache_dir, docker_config=args.docker_config, insecure=args.insecure, hf_token=hf_token(args)))

    return run("kaito pull", args, action)
