"""Prometheus metrics for one server process (own registry, so tests can build several)."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LAT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TPOT = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("kaito_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        # a client that went away before its answer was complete: not an answer, so not in kaito_requests
        self.disconnects = Counter("kaito_client_disconnects", "requests whose client went away before the answer",
                                   ["route"], registry=r)
        self.ttft = Histogram("kaito_time_to_first_token_seconds", "time to first token", ["model"],
                              buckets=_LAT, registry=r)
        self.tpot = Histogram("kaito_time_per_output_token_seconds", "mean time per output token after the first",
                              ["model"], buckets=_TPOT, registry=r)
        self.e2e = Histogram("kaito_request_latency_seconds", "end-to-end request latency", ["model"],
                             buckets=_LAT, registry=r)
        self.prompt_tokens = Counter("kaito_prompt_tokens", "prompt tokens processed", ["model"], registry=r)
        self.generation_tokens = Counter("kaito_generation_tokens", "tokens generated", ["model"], registry=r)
        self.queue_time = Histogram("kaito_queue_time_seconds", "arrival until the engine admitted the request "
                                    "(an adapter's load included)", ["model"], buckets=_LAT, registry=r)
        self.adapter_load_seconds = Histogram("kaito_adapter_load_seconds", "reading and attaching one adapter",
                                              buckets=_LAT, registry=r)
        self.adapters_resident = Gauge("kaito_adapters_resident", "adapters attached to the model", registry=r)
        self.adapter_evictions = Counter("kaito_adapter_evictions", "resident adapters evicted (LRU) for another",
                                         registry=r)
        self.adapter_load_failures = Counter("kaito_adapter_load_failures", "adapter fetches or loads that failed",
                                             registry=r)
        self.adapter_resolve_failures = Counter("kaito_adapter_resolve_failures", "adapter tag re-resolutions that "
                                                "failed (the digest already served stays)", registry=r)
        self.running = Gauge("kaito_running_sequences", "sequences in the running batch", registry=r)
        self.queued = Gauge("kaito_queued_sequences", "sequences waiting to join the batch", registry=r)

    def bind_engine(self, stats: Callable[[], object]) -> None:
        self.running.set_function(lambda: stats().running)
        self.queued.set_function(lambda: stats().queued)

    def observe(self, model: str, *, start: float, first: float | None, end: float, n_prompt: int, n_out: int):
        self.e2e.labels(model).observe(end - start)
        self.prompt_tokens.labels(model).inc(n_prompt)
        self.generation_tokens.labels(model).inc(n_out)
        if first is not None:
            self.ttft.labels(model).observe(first - start)
            if n_out > 1:
                self.tpot.labels(model).observe((end - first) / (n_out - 1))

    def forget(self, model: str) -> None:
        """Drop an unregistered adapter's series: label values stay within the registered set plus the base."""
        for family in (self.ttft, self.tpot, self.e2e, self.queue_time, self.prompt_tokens, self.generation_tokens):
            try:
                family.remove(model)
            except KeyError:
                pass

    def render(self) -> bytes:
        return generate_latest(self.registry)
