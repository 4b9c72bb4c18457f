"""A torch-free stand-in for serving.service.Service behind the HTTP API (serving.facade.Facade).

It "generates" a fixed answer per model, one character per delta, and records what the API asked
of it, so the API's tests check the protocol <-> facade <-> SSE mapping alone.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from serving.errors import BadRequest, ContextLengthExceeded, ModelNotFound, NotReady, Overloaded, Unauthorized
from serving.facade import Job, ModelCard
from serving.scheduler import SamplingParams

BASE_NAME = "fake"
CONTEXT = 64


@dataclass
class Delta:
    index: int
    text: str
    finish_reason: str | None = None
    completion_tokens: int = 0


@dataclass
class FakeFacade:
    model_name: str = BASE_NAME
    stream_interval_s: float = 0.0
    adapter_api: bool = False
    token: str | None = None
    ready: bool = True
    busy: bool = False  # generate() answers 429
    endless: bool = False  # streams never finish (until the reader leaves)
    answers: dict[str, str] = field(default_factory=lambda: {BASE_NAME: "hello world", "alpha": "ALPHA", None: "chat"})
    cards: list[ModelCard] = field(default_factory=lambda: [
        ModelCard(BASE_NAME, None, BASE_NAME), ModelCard("alpha", BASE_NAME, "/adapters/alpha", "sha256:aa")])
    jobs: list[Job] = field(default_factory=list)
    closed: int = 0  # streams the API closed
    requests: list[tuple[str, int]] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    loads: list[tuple[str, str]] = field(default_factory=list)
    unloads: list[str] = field(default_factory=list)
    load_error: Exception | None = None

    def require_ready(self) -> None:
        if not self.ready:
            raise NotReady("the model is still loading; retry shortly")

    def models(self) -> list[ModelCard]:
        return list(self.cards)

    def _route(self, model: str) -> str:
        name = model.split(":", 1)[1] if model.startswith(BASE_NAME + ":") else model
        if name not in self.answers:
            raise ModelNotFound(f"model {model!r} does not exist", param="model")
        return name

    def _job(self, model: str, adapter, prompt: str, max_tokens: int | None, n: int, param: str) -> Job:
        ids = list(prompt.encode())
        if not ids:
            raise BadRequest(f"{param} must not be empty", param=param)
        if len(ids) >= CONTEXT:
            raise ContextLengthExceeded(f"prompt is {len(ids)} tokens", param=param)
        job = Job(ids, SamplingParams(max_tokens=max_tokens or CONTEXT - len(ids)), model=model, adapter=adapter, n=n)
        self.jobs.append(job)
        return job

    def prepare_completion(self, req) -> Job:
        name = self._route(req.model)
        return self._job(name, name, req.prompt_text(), req.max_tokens, req.n, "prompt")

    def prepare_chat(self, req) -> Job:
        name = self._route(req.model)
        text = "".join(f"<{m.role}>{m.text()}" for m in req.messages)
        return self._job(name, name, text, req.max_completion_tokens or req.max_tokens, req.n, "messages")

    def prepare_kaito(self, req) -> Job:
        job = self._job(BASE_NAME, None, req.prompt, None, 1, "prompt")
        g = req.generate_kwargs
        if g is not None and g.max_new_tokens == 0:
            job = Job(job.prompt_ids, job.params, model=BASE_NAME, adapter=None, empty=True)
        return job

    async def generate(self, job: Job, *, batched: bool = False):
        if self.busy:
            raise Overloaded("server is at capacity; retry after 1s", retry_after=1)
        answer = self.answers[job.adapter][:job.params.max_tokens]

        async def stream():
            try:
                while True:
                    for i, ch in enumerate(answer):
                        last = i == len(answer) - 1 and not self.endless
                        ds = [Delta(k, ch, "length" if last else None, i + 1) for k in range(job.n)]
                        await asyncio.sleep(0.005 if self.endless else 0)
                        if batched:
                            yield ds
                        else:
                            for d in ds:
                                yield d
                    if not self.endless:
                        return
            finally:
                self.closed += 1
        return stream()

    def clean_up_spaces(self, text: str) -> str:
        return text.replace(" ,", ",")

    def check_admin_token(self, authorization: str | None) -> None:
        if self.token and authorization != f"Bearer {self.token}":
            raise Unauthorized("the adapter API needs the bearer token")

    async def load_adapter(self, name: str, source: str) -> None:
        if self.load_error is not None:
            raise self.load_error
        self.loads.append((name, source))

    async def unload_adapter(self, name: str) -> None:
        if name not in self.answers:
            raise ModelNotFound(f"adapter {name!r} is not loaded", param="lora_name")
        self.unloads.append(name)

    def count_request(self, route: str, status: int) -> None:
        self.requests.append((route, status))

    def count_disconnect(self, route: str) -> None:
        self.disconnects.append(route)

    def render_metrics(self) -> bytes:
        return b"# fake\n"
