"""One serving replica's state: the loaded model, its engine and metrics, and model-name routing.

The model loads on a background thread so the HTTP side can answer /healthz with 503 meanwhile.
`current()` is the replica-wide instance the FastAPI routes use (one Service per process).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .config import ResolvedArgs, ServeArgs, resolve
from .errors import ModelNotFound, NotReady
from .loading import BASE, LoadedModel, load_model
from .metrics import Metrics

log = logging.getLogger(__name__)

_CURRENT: "Service | None" = None


def current() -> "Service":
    if _CURRENT is None:
        raise NotReady("the model server is starting")
    return _CURRENT


def install(service: "Service") -> "Service":
    global _CURRENT
    _CURRENT = service
    return service


class Service:
    def __init__(self, args: ServeArgs | dict[str, Any], *, background: bool = True):
        self.args = args if isinstance(args, ServeArgs) else ServeArgs.from_dict(args)
        self.resolved: ResolvedArgs | None = None
        self.loaded: LoadedModel | None = None
        self.engine = None
        self.error: str | None = None
        self.metrics = Metrics()
        self.ready = threading.Event()
        if background:
            threading.Thread(target=self._load_logged, name="model-load", daemon=True).start()
        else:
            self.load()

    @property
    def model_name(self) -> str:
        return self.resolved.served_model_name if self.resolved else (self.args.served_model_name or "model")

    def _load_logged(self) -> None:
        try:
            self.load()
        except Exception as e:  # noqa: BLE001 - reported by /healthz and every request
            self.error = str(e)
            log.exception("model load failed")

    def load(self) -> None:
        import torch

        from .engine import Engine

        r = self.resolved = resolve(self.args, cuda_available=torch.cuda.is_available())
        # Ray sets OMP_NUM_THREADS to the actor's num_cpus (1 by default), which would leave a CPU
        # replica on one core: use the threads the args name, else this machine's share per replica
        torch.set_num_threads(self.args.num_threads or default_threads(self.args.num_replicas))
        source = r.source
        if source is None:  # the tiny preset: built locally, never downloaded
            from tinymodel import ensure_tiny_model

            source = str(ensure_tiny_model())
        self.loaded = load_model(source, dtype=r.dtype, trust_remote_code=r.trust_remote_code,
                                 adapters=r.adapters, device=r.device, max_model_len=r.context_length,
                                 chat_template=r.chat_template)
        a = self.args
        chunk = {} if a.prefill_chunk is None else {"prefill_chunk": a.prefill_chunk or None}
        self.engine = Engine.from_loaded(self.loaded, max_running=a.max_batch_size, max_queue=a.max_queue,
                                         kv_cache_bytes=a.kv_cache_bytes, prefix_cache=a.prefix_cache, **chunk)
        self.metrics.bind_engine(self.engine.stats)
        self.ready.set()
        log.info("model %s ready (%s, %s)", r.served_model_name, r.device, r.dtype)

    def require_ready(self) -> None:
        if not self.ready.is_set():
            if self.error:
                raise NotReady(f"the model failed to load: {self.error}")
            raise NotReady("the model is still loading; retry shortly")

    def adapter_for(self, model: str) -> str | None:
        """OpenAI `model` -> engine adapter key: base name, '<adapter>' or '<base>:<adapter>'."""
        base = self.model_name
        name = model.split(":", 1)[1] if model.startswith(base + ":") else model
        if name == base:
            return BASE if self.loaded.adapters else None
        if name in self.loaded.adapters:
            return name
        raise ModelNotFound(f"model {model!r} does not exist; available: {', '.join(self.model_ids())}",
                            param="model")

    def model_ids(self) -> list[str]:
        return [self.model_name, *(self.loaded.adapters if self.loaded else ())]

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()


def default_threads(replicas: int = 1) -> int:
    """Torch threads for one replica: its share of the cores this process may use, less one core
    for the replica's event loop, HTTP and Serve proxy. torch's OpenMP workers spin while they wait,
    so a thread per core starves those: on the 2-core build machine 2 threads served 0.5-0.7x
    the tokens/s of 1 (docs/serving.md, "Threads")."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, replicas) - 1)
