"""One serving replica: the facade (serving/facade.py) over the loaded model, its engine, adapters and metrics.

Everything about generation lives here: tokenizing, the chat template, the length checks (the
engine's `check_length`, once), model-name routing to adapters, and per-model metrics. The HTTP
layer (serving/api.py) only maps the protocol to these calls.

The model loads on a background thread so the HTTP side can answer /healthz with 503 meanwhile.
`current()` is the replica-wide instance the FastAPI routes use (one Service per process).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable

from contract.serveargs import ADAPTER_API_TOKEN_ENV

from . import podcondition
from .config import ResolvedArgs, ServeArgs, parse_args, resolve
from .engine import Engine
from .errors import BadRequest, ModelNotFound, NotReady, Unauthorized
from .facade import BASE, Job, ModelCard
from .loading import LoadedModel, load_model
from .metrics import Metrics
from .protocol import ChatCompletionRequest, CompletionRequest, KaitoChatRequest

if TYPE_CHECKING:
    from .adapters import AdapterRegistry

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
    """The real `Facade`: a model, its engine and metrics."""

    def __init__(self, args: ServeArgs | dict[str, Any], *, background: bool = True):
        self.args = args if isinstance(args, ServeArgs) else parse_args(args)
        self.resolved: ResolvedArgs | None = None
        self.loaded: LoadedModel | None = None
        self.engine: Engine | None = None
        self.adapters: AdapterRegistry | None = None
        self.pod_status: podcondition.PodStatusReporter | None = None
        self.error: str | None = None
        self.metrics = Metrics()
        self.ready = threading.Event()
        self._wanted: list | None = None  # an adapter set applied while the model loads
        self._wanted_lock = threading.Lock()
        self.stream_interval_s = self.args.stream_interval_ms / 1000
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

        from .adapters import AdapterRegistry  # torch and peft: only once a model loads

        r = self.resolved = resolve(self.args, cuda_available=torch.cuda.is_available())
        # Ray sets OMP_NUM_THREADS to the actor's num_cpus (1 by default), which would leave a CPU
        # replica on one core: use the threads the args name, else this machine's share per replica
        torch.set_num_threads(self.args.num_threads or default_threads(self.args.num_replicas))
        source = r.source
        if source is None:  # the tiny preset: built locally, never downloaded
            from tinymodel import ensure_tiny_model

            source = str(ensure_tiny_model())
        self.loaded = load_model(source, dtype=r.dtype, trust_remote_code=r.trust_remote_code, device=r.device,
                                 max_model_len=r.context_length, chat_template=r.chat_template)
        a = self.args
        chunk = {} if a.prefill_chunk is None else {"prefill_chunk": a.prefill_chunk or None}
        self.engine = Engine.from_loaded(self.loaded, max_running=a.max_batch_size, max_queue=a.max_queue,
                                         kv_cache_bytes=a.kv_cache_bytes, prefix_cache=a.prefix_cache,
                                         compile_decode=a.compile_decode, **chunk)
        self.metrics.bind_engine(self.engine.stats)
        self.pod_status = podcondition.from_environment()  # None outside a pod
        self.adapters = AdapterRegistry(self.engine, base_name=r.served_model_name, max_adapters=a.max_adapters,
                                        max_resident=a.max_resident_adapters, cold_wait_s=a.adapter_cold_wait_s,
                                        metrics=self.metrics,
                                        on_availability=self.pod_status.update if self.pod_status else None)
        specs = list(a.adapters) or None  # the initial set, then any set applied while it loaded
        while True:
            if specs is not None:  # a failed adapter is served as unavailable, never fatal
                log.info("adapters: %s", self.adapters.submit(self.adapters.apply, specs).result())
            with self._wanted_lock:
                specs, self._wanted = self._wanted, None
                if specs is None:
                    self.ready.set()
                    break
        log.info("model %s ready (%s, %s)", r.served_model_name, r.device, r.dtype)

    def require_ready(self) -> None:
        if not self.ready.is_set():
            if self.error:
                raise NotReady(f"the model failed to load: {self.error}")
            raise NotReady("the model is still loading; retry shortly")

    # -- models and adapters ---------------------------------------------------------------------
    def _route(self, model: str) -> tuple[str, str | None]:
        """OpenAI `model` (base name, '<adapter>' or '<base>:<adapter>') -> (served name, engine adapter key)."""
        base = self.model_name
        name = model.split(":", 1)[1] if model.startswith(base + ":") else model
        if name == base:
            return base, BASE
        if self.adapters.lookup(name) is not None:
            return name, name
        raise ModelNotFound(f"model {model!r} does not exist; available: {', '.join(c.id for c in self.models())}",
                            param="model")

    def models(self) -> list[ModelCard]:
        base = ModelCard(id=self.model_name, parent=None, source=str(self.resolved.source) if self.resolved
                         and self.resolved.source else self.model_name)
        return [base, *(self.adapters.cards() if self.adapters else ())]

    async def apply_adapters(self, specs: Iterable[Any]) -> dict[str, str]:
        """Make the served adapter set equal `specs` (contract AdapterArg-like: name, source, strength):
        new ones load, a changed digest or strength swaps between steps, missing ones unload once
        their running requests finish. A failure keeps the old version serving, marked unavailable
        in /v1/models with the reason. Returns what happened per name ("pending" for all while the
        model still loads: the set is applied as soon as it has)."""
        specs = list(specs)
        with self._wanted_lock:
            if not self.ready.is_set():
                if self.error:
                    raise NotReady(f"the model failed to load: {self.error}")
                self._wanted = specs
                return {(s["name"] if isinstance(s, dict) else s.name): "pending" for s in specs}
        return await asyncio.wrap_future(self.adapters.submit(self.adapters.apply, list(specs)))

    # -- requests --------------------------------------------------------------------------------
    def _encode(self, text: str, param: str, *, special: bool = True) -> list[int]:
        ids = self.loaded.tokenizer(text, add_special_tokens=special)["input_ids"]
        if not ids:
            raise BadRequest(f"{param} must not be empty (it encodes to no tokens)", param=param)
        return ids

    def prepare_completion(self, req: CompletionRequest) -> Job:
        model, adapter = self._route(req.model)
        ids = self._encode(req.prompt_text(), "prompt")
        params = req.sampling(self.engine.check_length(len(ids), req.max_tokens, "prompt"))
        return Job(ids, params, model=model, adapter=adapter, n=req.n)

    def prepare_chat(self, req: ChatCompletionRequest) -> Job:
        model, adapter = self._route(req.model)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            text = self.loaded.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                             chat_template=self.loaded.chat_template)
        except Exception as e:  # noqa: BLE001 - jinja raises on role orders a template forbids
            raise BadRequest(f"messages: the chat template rejected them: {e}", param="messages") from e
        ids = self._encode(text, "messages", special=False)  # the template already holds them
        max_tokens = req.max_completion_tokens or req.max_tokens
        params = req.sampling(self.engine.check_length(len(ids), max_tokens, "messages"))
        return Job(ids, params, model=model, adapter=adapter, n=req.n)

    def prepare_kaito(self, req: KaitoChatRequest) -> Job:
        """KAITO's /chat: the strength-combined adapter, transformers' generate length rules."""
        ids = self._encode(req.prompt, "prompt")
        self.engine.check_length(len(ids), None, "prompt")
        params, max_new = req.sampling(len(ids), self.engine.context_length)
        return Job(ids, params, model=self.model_name, adapter=None, empty=max_new == 0)

    async def generate(self, job: Job, *, batched: bool = False) -> AsyncIterator:
        start = time.perf_counter()
        # an adapter stays resident while this request runs (a non-resident one loads first)
        release = await self.adapters.acquire(job.adapter) if job.adapter not in (None, BASE) else None
        try:
            stream = await self.engine.generate(job.prompt_ids, job.params, n=job.n, adapter=job.adapter,
                                                batched=True, interval_s=self.stream_interval_s if batched else 0.0)
        except BaseException:
            if release:
                release()
            raise
        self.metrics.queue_time.labels(job.model).observe(time.perf_counter() - start)
        return self._observed(stream, job, start, batched, release)

    async def _observed(self, stream, job: Job, start: float, batched: bool, release) -> AsyncIterator:
        """The engine's stream, passed through; the request's metrics once every choice finished."""
        first, n_out, left = None, 0, job.n
        try:
            async for batch in stream:
                first = first or time.perf_counter()
                for d in batch:
                    if d.finish_reason is not None:
                        n_out, left = n_out + d.completion_tokens, left - 1
                if batched:
                    yield batch
                else:
                    for d in batch:
                        yield d
        finally:
            await stream.aclose()
            if release:
                release()
        if not left:
            self.metrics.observe(job.model, start=start, first=first, end=time.perf_counter(),
                                 n_prompt=job.n_prompt, n_out=n_out)

    def clean_up_spaces(self, text: str) -> str:
        return self.loaded.tokenizer.clean_up_tokenization(text)

    # -- the runtime adapter API -----------------------------------------------------------------
    @property
    def adapter_api(self) -> bool:
        return self.args.adapter_api

    def check_admin_token(self, authorization: str | None) -> None:
        token = os.environ.get(ADAPTER_API_TOKEN_ENV)
        if not token:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthorized("the adapter API needs the bearer token configured for this endpoint")

    async def load_adapter(self, name: str, source: str) -> None:
        await asyncio.wrap_future(self.adapters.submit(self.adapters.load_api, name, source))

    async def unload_adapter(self, name: str) -> None:
        gone = await asyncio.wrap_future(self.adapters.submit(self.adapters.unload, name))
        await asyncio.wrap_future(gone)  # detached once its running requests finished

    # -- metrics and lifecycle -------------------------------------------------------------------
    def count_request(self, route: str, status: int) -> None:
        self.metrics.requests.labels(route, str(status)).inc()

    def count_disconnect(self, route: str) -> None:
        self.metrics.disconnects.labels(route).inc()

    def render_metrics(self) -> bytes:
        return self.metrics.render()

    def shutdown(self) -> None:
        if self.adapters is not None:
            self.adapters.shutdown()
        if self.engine is not None:
            self.engine.shutdown()
        if self.pod_status is not None:
            self.pod_status.close()


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
