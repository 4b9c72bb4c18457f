"""Start and stop an embedded, loopback-only Ray instance with Serve (kaito up, tests, benchmarks)."""
from __future__ import annotations

import os


def ray_env_defaults() -> None:
    # keep every Ray listener on 127.0.0.1 and skip token auth (it writes into $HOME)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def start(*, host: str = "127.0.0.1", port: int = 8000, num_cpus: int | None = None,
          object_store_mb: int = 200) -> None:
    ray_env_defaults()
    import ray
    from ray import serve

    ray.init(include_dashboard=False, num_cpus=num_cpus or os.cpu_count() or 1,
             object_store_memory=object_store_mb << 20, log_to_driver=False,
             configure_logging=False)
    serve.start(http_options={"host": host, "port": port}, detached=False)


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
