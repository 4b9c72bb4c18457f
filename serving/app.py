"""The Ray Serve application: `serving.app:build` (for `serve run`, Serve config YAML and `kaito up`).

One deployment, `ModelServer`: a FastAPI ingress (serve.ingress) whose replicas each own a model and
its continuous-batching engine. Why not a separate ingress deployment in front of the model: every
streamed chunk would then cross one more actor hop, and Serve's per-node proxies already balance
HTTP requests across model replicas (see docs/serving.md).
"""
from __future__ import annotations

from typing import Any

from ray import serve
from ray.exceptions import TaskCancelledError

from .api import create_app
from .config import ServeArgs, parse_args
from .service import Service, current, install

# Headroom above the engine's own bound, so the engine (not Serve) decides overload and answers 429.
_ONGOING_HEADROOM = 16

# Serve's receive() raises TaskCancelledError once the proxy has cancelled a request whose client left
_app = create_app(current, disconnect_errors=(TaskCancelledError,))


@serve.deployment(name="ModelServer", health_check_period_s=10, health_check_timeout_s=30,
                  graceful_shutdown_timeout_s=5)
@serve.ingress(_app)
class ModelServer:
    def __init__(self, args: dict[str, Any]):
        self.service = install(Service(args, background=True))

    def check_health(self) -> None:
        # a replica whose model failed to load is unhealthy, so Serve replaces it
        if self.service.error:
            raise RuntimeError(self.service.error)

    def __del__(self):
        try:
            self.service.shutdown()
        except Exception:  # noqa: BLE001
            pass


def deployment_options(args: ServeArgs) -> dict[str, Any]:
    actor: dict[str, Any] = {"num_cpus": args.cpus_per_replica}
    if args.gpus_per_replica:
        actor["num_gpus"] = args.gpus_per_replica
    opts: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": args.max_batch_size + args.max_queue + _ONGOING_HEADROOM,
    }
    if args.autoscaling:
        opts["autoscaling_config"] = {"min_replicas": 1, "max_replicas": args.num_replicas,
                                      "target_ongoing_requests": args.max_batch_size, **args.autoscaling}
    else:
        opts["num_replicas"] = args.num_replicas
    if args.gpus_per_replica > 0:
        opts["max_replicas_per_node"] = 1  # one replica per GPU node, spread across nodes
    return opts


def build(args: dict[str, Any] | None = None) -> serve.Application:
    """Application builder: `args` is the `args:` map of the Serve config (`contract.serveargs.ServeArgs`)."""
    parsed = parse_args(args)
    return ModelServer.options(**deployment_options(parsed)).bind(parsed.model_dump())
