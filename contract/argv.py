"""The pod commands the hooks write and the entrypoints parse: Ray head, Ray worker, adapter prefetch.

Each builder here has its parser beside it (or, for `kaito pull`, the flag it names), and both
the hooks (hooks/children) and the entrypoints (serving/cluster.py, artifacts/cli_pull.py) use
them, so a command a pod runs is one its entrypoint accepts. The tuning Job's command is
`contract.tuningjob.TuningJobArgs.argv`.
"""
from __future__ import annotations

import argparse

__all__ = ["CLUSTER_ENTRYPOINT", "PULL", "FROM_SERVE_CONFIG", "head_command", "worker_command", "prefetch_command",
           "pull_command", "cluster_parser"]

CLUSTER_ENTRYPOINT = ("python", "-m", "serving.cluster")
PULL = ("kaito", "pull")
#: `kaito pull`'s flag that fetches every adapter a Serve config lists (the prefetch init container).
FROM_SERVE_CONFIG = "--from-serve-config"


def head_command(config_path: str) -> list[str]:
    return [*CLUSTER_ENTRYPOINT, "head", "--config", config_path]


def worker_command(head_address: str) -> list[str]:
    return [*CLUSTER_ENTRYPOINT, "worker", "--address", head_address]


def prefetch_command(config_path: str) -> list[str]:
    return [*PULL, FROM_SERVE_CONFIG, config_path]


def pull_command(source: str, dest: str) -> list[str]:
    return [*PULL, source, dest]


def cluster_parser() -> argparse.ArgumentParser:
    """The parser of `python -m serving.cluster` (what head_command and worker_command write)."""
    p = argparse.ArgumentParser(prog=" ".join(CLUSTER_ENTRYPOINT))
    sub = p.add_subparsers(dest="role", required=True)
    h = sub.add_parser("head", help="start the Ray head and deploy the Serve config")
    h.add_argument("--config", required=True, help="the Serve config file (the mounted ConfigMap)")
    w = sub.add_parser("worker", help="join a Ray head")
    w.add_argument("--address", required=True, help="HOST:PORT of the head")
    return p
