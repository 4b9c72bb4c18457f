"""The generation facade: the one typed object the HTTP layer talks to (issue 13, item 6).

`serving/api.py` maps the wire protocol to these calls and the answers to JSON or SSE; everything
about generation (tokenizing, chat templates, length checks, adapters, metrics) is behind `Facade`.
`serving.service.Service` implements it over the real engine; the API's unit tests use a fake.

This module imports no torch, no engine and no HTTP framework, so the API and its tests do not either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol

from .protocol import ChatCompletionRequest, CompletionRequest, KaitoChatRequest
from .scheduler import SamplingParams

__all__ = ["Facade", "Job", "ModelCard", "DeltaLike", "BASE"]

BASE = "__base__"  # Job.adapter for the base weights (peft's name for "no adapter" in a mixed batch)


@dataclass(frozen=True)
class Job:
    """A validated generation request, ready for the engine."""
    prompt_ids: list[int]
    params: SamplingParams
    model: str  # the served name it addresses (base or adapter): the answer's `model` and the metrics label
    adapter: str | None  # the engine's adapter key: None = /chat's combined adapter, BASE, or an adapter's name
    n: int = 1
    empty: bool = False  # nothing to generate (KAITO's max_length already reached by the prompt)

    @property
    def n_prompt(self) -> int:
        return len(self.prompt_ids)


@dataclass(frozen=True)
class ModelCard:
    """One entry of /v1/models."""
    id: str
    parent: str | None  # the base model's name for an adapter
    source: str  # where the weights came from
    digest: str | None = None
    available: bool = True
    reason: str | None = None  # why it is unavailable (its last load failed)


class DeltaLike(Protocol):
    """What a generation stream yields (serving.engine.Delta)."""
    index: int
    text: str
    finish_reason: str | None
    completion_tokens: int


class Facade(Protocol):
    model_name: str
    stream_interval_s: float  # hold streamed tokens this long (fewer, larger SSE writes)
    adapter_api: bool  # whether POST /v1/load_lora_adapter and /v1/unload_lora_adapter are served

    def require_ready(self) -> None:
        """Raise NotReady (503) while the model loads or after it failed to."""

    def models(self) -> list[ModelCard]:
        """Exactly what is served: the base model, then every registered adapter."""

    def prepare_completion(self, req: CompletionRequest) -> Job: ...

    def prepare_chat(self, req: ChatCompletionRequest) -> Job: ...

    def prepare_kaito(self, req: KaitoChatRequest) -> Job: ...

    async def generate(self, job: Job, *, batched: bool = False) -> AsyncIterator:
        """Admit now (429 before any byte), then yield deltas (lists of them when batched).
        Leaving early cancels the request; the facade records the request's metrics at its end."""

    def clean_up_spaces(self, text: str) -> str:
        """The tokenizer's clean_up_tokenization (KAITO's clean_up_tokenization_spaces)."""

    def check_admin_token(self, authorization: str | None) -> None:
        """Raise Unauthorized (401) unless the bearer token of the adapter API matches (when one is set)."""

    async def load_adapter(self, name: str, source: str) -> None:
        """Register and load an adapter (400 naming the problem; the served set unchanged on failure)."""

    async def unload_adapter(self, name: str) -> None:
        """Stop serving an adapter: new requests get 404 at once, running ones finish first."""

    def count_request(self, route: str, status: int) -> None: ...

    def count_disconnect(self, route: str) -> None: ...

    def render_metrics(self) -> bytes: ...
