"""The Ray Serve application: `serving.app:build` (for `serve run`, Serve config YAML and `kaito up`).

One deployment, `ModelServer`: a FastAPI ingress (serve.ingress) whose replicas each own a model and
its continuous-batching engine. Why not a separate ingress deployment in front of the model: every
streamed chunk would then cross one more actor hop, and Serve's per-node proxies already balance
HTTP requests across model replicas (see docs/serving.md).

The adapter set and the other hot keys (serving/liveconfig.py) are the deployment's `user_config`, not
builder args: Serve hands a changed user_config to every live replica's `reconfigure()` and keeps the
replicas. The first reconfigure() (Serve calls it right after the constructor) starts the model load.
"""
from __future__ import annotations

from typing import Any

from ray import serve
from ray.exceptions import TaskCancelledError

from .adaptersync import AdapterSync
from .api import create_app
from .config import ServeArgs, parse_args
from .liveconfig import split_args
from .service import Service, current, install

DEPLOYMENT_NAME = "ModelServer"

# Headroom above the engine's own bound, so the engine (not Serve) decides overload and answers 429.
_ONGOING_HEADROOM = 16

# Serve's receive() raises TaskCancelledError once the proxy has cancelled a request whose client left
_app = create_app(current, disconnect_errors=(TaskCancelledError,))


@serve.deployment(name=DEPLOYMENT_NAME, health_check_period_s=10, health_check_timeout_s=30,
                  graceful_shutdown_timeout_s=5)
@serve.ingress(_app)
class ModelServer:
    def __init__(self, args: dict[str, Any]):
        self.args = args  # the builder args, without the hot keys
        self.service: Service | None = None
        self.sync: AdapterSync | None = None

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this with the hot keys: once at start, then on every change. It returns at once
        (Serve routes nothing to a replica inside reconfigure()); the adapters follow in the background."""
        if self.sync is None:
            self.sync = AdapterSync(self.args, self._apply_adapters, ready=self._engine_ready,
                                    on_resolve_failure=self._count_resolve_failure, on_problem=self._mark)
            specs = await self.sync.initial(user_config)
            args = parse_args({**self.args, **user_config, "adapters": [s.model_dump() for s in specs]})
            self.service = install(Service(args, background=True))
            self.sync.start()
        else:
            self.sync.submit(user_config)

    def _engine_ready(self) -> bool:
        return self.service is not None and self.service.ready.is_set()

    async def _apply_adapters(self, specs: list) -> None:
        await self.service.apply_adapters(specs)

    def _count_resolve_failure(self, _name: str, _reason: str) -> None:
        if self.service is not None:
            self.service.metrics.adapter_resolve_failures.inc()

    def _mark(self, name: str, problem: str | None, previous: str | None) -> None:
        # the loaded version keeps serving; /v1/models shows it unavailable, with why
        if self.service is not None and self.service.adapters is not None:
            self.service.adapters.mark(name, problem, clears=previous)

    def check_health(self) -> None:
        # a replica whose model failed to load is unhealthy, so Serve replaces it
        if self.service is not None and self.service.error:
            raise RuntimeError(self.service.error)

    def __del__(self):
        try:
            self.service.shutdown()
        except Exception:  # noqa: BLE001
            pass


def deployment_options(args: ServeArgs, *, replica_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Serve's options for the deployment; `replica_env`: environment variables of each replica
    process (Serve reads its RAY_SERVE_* knobs when the replica starts; Serve merges them with the
    application's runtime_env env_vars)."""
    actor: dict[str, Any] = {"num_cpus": args.cpus_per_replica}
    if replica_env:
        actor["runtime_env"] = {"env_vars": dict(replica_env)}
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
    return application(args)


def application(args: dict[str, Any] | None = None, *, replica_env: dict[str, str] | None = None) -> serve.Application:
    """`build`, with extra replica environment (benchmarks compare Serve's knobs side by side)."""
    parsed = parse_args(args)
    static, hot = split_args(args)
    return ModelServer.options(**deployment_options(parsed, replica_env=replica_env), user_config=hot).bind(static)
