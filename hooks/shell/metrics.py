"""Prometheus metrics of the hook server.

Under gunicorn with several workers set PROMETHEUS_MULTIPROC_DIR (the deploy manifests do, and
hooks.shell.gunicorn_conf empties it at start and marks dead workers): /metrics then aggregates every
worker. Without it, each worker reports only its own requests.
"""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

LATENCY = Histogram("kaito_hook_request_duration_seconds", "Hook request latency", ["endpoint"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ERRORS = Counter("kaito_hook_errors_total", "Hook requests answered with an error", ["endpoint", "code"])


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
