"""gunicorn settings for the hook server: `gunicorn -c python:hooks.shell.gunicorn_conf hooks.shell.app:app`."""
from __future__ import annotations

import os
import shutil

timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None  # request bodies and paths are not worth logging at sync rates; errors still log


def on_starting(server) -> None:  # noqa: ARG001 - gunicorn hook signature
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker) -> None:  # noqa: ARG001
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
