"""Start and stop an embedded, loopback-only Ray instance with Serve (kaito up, tests, benchmarks)."""
from __future__ import annotations

import logging
import os

from contract.ports import SERVE_PORT


def ray_env_defaults() -> None:
    # keep every Ray listener on 127.0.0.1 and skip token auth (it writes into $HOME)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def start(*, host: str = "127.0.0.1", port: int = SERVE_PORT, num_cpus: int | None = None,
          object_store_mb: int = 200, quiet: bool = False) -> None:
    """`quiet`: only warnings from Serve's driver-side logger. Its INFO lines mislead a user here:
    "Connecting to existing Serve app ... will not be applied" follows our own serve.start (whose
    http_options did apply), and "Application ... is ready" comes before the model has loaded."""
    ray_env_defaults()
    import ray
    from ray import serve

    if quiet:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    ray.init(include_dashboard=False, num_cpus=num_cpus or os.cpu_count() or 1,
             object_store_memory=object_store_mb << 20, log_to_driver=False,
             configure_logging=False)
    serve.start(http_options={"host": host, "port": port}, detached=False)


def stop() -> None:
    """Tear the local instance down with Ray itself.

    serve.shutdown() first would ask the controller for a graceful_shutdown that only ends when the
    controller is killed, and Ray then reports that expected kill as a failed task ("killed by
    ray.kill") on stdout. The instance is ours alone and ray.shutdown() ends every process in it,
    replicas included, so Serve's own shutdown adds nothing here but that warning.
    """
    import ray
    from ray.serve import context

    try:
        ray.shutdown()
    finally:
        context._set_global_client(None)  # the next start() in this process must not reuse a dead client
