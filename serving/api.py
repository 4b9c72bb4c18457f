"""HTTP API: KAITO's /chat and the OpenAI routes over one Service. Thin: decode, call, encode.

Every failure before the first byte is a real HTTP status with the OpenAI error envelope; a stream
starts only after admission (so a 429 or a 400 is never hidden inside a 200 SSE body).
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from . import protocol
from .errors import BadRequest, ModelNotFound, PayloadTooLarge, ServingError
from .service import Service

MAX_BODY_BYTES = 1 << 20  # 1 MiB: far beyond any context this server accepts


def create_app(get_service: Callable[[], Service]) -> FastAPI:
    app = FastAPI(title="kaito-ray serving", docs_url=None, redoc_url=None)

    async def run(route: str, request: Request, handler, *, kaito: bool = False) -> Response:
        svc: Service | None = None
        try:
            svc = get_service()
            svc.require_ready()
            body = await _json_body(request)
            resp = await handler(svc, body, request)
        except ServingError as e:
            content = e.envelope()
            if kaito:
                content = {"detail": e.message, **content}  # KAITO clients read "detail"
            resp = JSONResponse(content, status_code=e.status, headers=e.headers())
        if svc is not None:
            svc.metrics.requests.labels(route, str(resp.status_code)).inc()
        return resp

    @app.get("/")
    async def root():
        return {"message": "Server is running"}

    @app.get("/healthz")
    @app.get("/health")
    async def healthz():
        try:
            get_service().require_ready()
        except ServingError as e:
            return JSONResponse(e.envelope(), status_code=e.status)
        return {"status": "Healthy"}

    @app.get("/metrics")
    async def metrics():
        try:
            svc = get_service()
        except ServingError as e:
            return JSONResponse(e.envelope(), status_code=e.status)
        return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        try:
            svc = get_service()
            svc.require_ready()
        except ServingError as e:
            return JSONResponse(e.envelope(), status_code=e.status)
        created = int(time.time())
        data = [{"id": svc.model_name, "object": "model", "created": created, "owned_by": "kaito",
                 "root": svc.model_name, "parent": None}]
        data += [{"id": n, "object": "model", "created": created, "owned_by": "kaito", "root": a.path,
                  "parent": svc.model_name} for n, a in svc.loaded.adapters.items()]
        return {"object": "list", "data": data}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        listing = await models()
        if isinstance(listing, Response):
            return listing
        for m in listing["data"]:
            if m["id"] == model_id:
                return m
        err = ModelNotFound(f"model {model_id!r} does not exist", param="model")
        return JSONResponse(err.envelope(), status_code=err.status)

    @app.post("/chat")
    async def chat(request: Request):
        return await run("/chat", request, _kaito_chat, kaito=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await run("/v1/completions", request, _completions)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await run("/v1/chat/completions", request, _chat_completions)

    return app


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {MAX_BODY_BYTES}")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body exceeds the limit of {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw or b"null")
    except ValueError as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from e


# -- KAITO /chat ------------------------------------------------------------------------------------

async def _kaito_chat(svc: Service, body: Any, request: Request) -> Response:
    if isinstance(body, dict) and not body.get("prompt"):
        raise BadRequest("Text generation parameter prompt required", param="prompt")
    req = protocol.parse(protocol.KaitoChatRequest, body)
    if not isinstance(req.generate_kwargs, dict):
        raise BadRequest("generate_kwargs must be an object", param="generate_kwargs")
    tok = svc.loaded.tokenizer
    ids = tok(req.prompt)["input_ids"]
    params, max_new = protocol.kaito_sampling(req.generate_kwargs, len(ids))
    svc.engine.check_length(len(ids), None, "prompt")
    text = ""
    if max_new > 0:
        params = _cap(svc, params, len(ids))
        text = (await _collect(svc, ids, params, 1, None, request))[0][0]
    if req.clean_up_tokenization_spaces:
        text = tok.clean_up_tokenization(text)
    return JSONResponse({"Result": (req.prompt + text) if req.return_full_text else text})


def _cap(svc: Service, params, n_prompt: int):
    from dataclasses import replace
    room = svc.engine.context_length - n_prompt
    return replace(params, max_tokens=min(params.max_tokens, room)) if params.max_tokens > room else params


# -- OpenAI -----------------------------------------------------------------------------------------

async def _completions(svc: Service, body: Any, request: Request) -> Response:
    req = protocol.parse(protocol.CompletionRequest, body)
    adapter = svc.adapter_for(req.model)
    prompt = req.prompt_text()
    ids = svc.loaded.tokenizer(prompt)["input_ids"]
    if not ids:
        raise BadRequest("prompt must not be empty", param="prompt")
    params = req.sampling(svc.engine.check_length(len(ids), req.max_tokens, "prompt"))
    prefix = prompt if req.echo else ""
    return await _respond(svc, req, ids, params, adapter, request, kind="text_completion", prefix=prefix)


async def _chat_completions(svc: Service, body: Any, request: Request) -> Response:
    req = protocol.parse(protocol.ChatCompletionRequest, body)
    adapter = svc.adapter_for(req.model)
    messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    tok = svc.loaded.tokenizer
    try:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                       chat_template=svc.loaded.chat_template)
    except Exception as e:  # noqa: BLE001 - jinja raises on role orders a template forbids
        raise BadRequest(f"messages: the chat template rejected them: {e}", param="messages") from e
    ids = tok(text, add_special_tokens=False)["input_ids"]
    max_tokens = req.max_completion_tokens or req.max_tokens
    params = req.sampling(svc.engine.check_length(len(ids), max_tokens, "messages"))
    return await _respond(svc, req, ids, params, adapter, request, kind="chat.completion")


async def _respond(svc, req, ids, params, adapter, request, *, kind: str, prefix: str = "") -> Response:
    rid = ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + uuid.uuid4().hex[:24]
    created = int(time.time())
    if not req.stream:
        outs = await _collect(svc, ids, params, req.n, adapter, request)
        choices = []
        for i, (text, reason, _) in enumerate(outs):
            c = {"index": i, "finish_reason": reason, "logprobs": None}
            if kind == "chat.completion":
                c["message"] = {"role": "assistant", "content": text}
            else:
                c["text"] = prefix + text
            choices.append(c)
        n_out = sum(o[2] for o in outs)
        return JSONResponse({"id": rid, "object": kind, "created": created, "model": req.model,
                             "choices": choices, "usage": _usage(len(ids), n_out)})
    stream = await svc.engine.generate(ids, params, n=req.n, adapter=adapter, batched=True,  # 429 here, before the 200
                                       interval_s=svc.args.stream_interval_ms / 1000)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return StreamingResponse(_sse(svc, stream, rid, created, req, kind, len(ids), include_usage, prefix),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _sse(svc, stream, rid, created, req, kind, n_prompt, include_usage, prefix) -> AsyncIterator[bytes]:
    chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else "text_completion"
    start, first, n_out = time.perf_counter(), None, 0

    def chunk(index: int, text: str | None, reason: str | None, role: bool = False) -> bytes:
        if kind == "chat.completion":
            delta: dict = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            c = {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}
        else:
            c = {"index": index, "text": text or "", "finish_reason": reason, "logprobs": None}
        obj = {"id": rid, "object": chunk_kind, "created": created, "model": req.model, "choices": [c]}
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    try:
        for i in range(req.n):
            if kind == "chat.completion":
                yield chunk(i, None, None, role=True)
            elif prefix:
                yield chunk(i, prefix, None)
        async for batch in stream:  # everything already generated goes out in one write
            if first is None:
                first = time.perf_counter()
            out = []
            for d in batch:
                if d.finish_reason is not None:
                    n_out += d.completion_tokens
                if d.text or d.finish_reason:
                    out.append(chunk(d.index, d.text, _reason(d.finish_reason)))
            if out:
                yield b"".join(out)
        if include_usage:
            obj = {"id": rid, "object": chunk_kind, "created": created, "model": req.model, "choices": [],
                   "usage": _usage(n_prompt, n_out)}
            yield b"data: " + json.dumps(obj).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
        svc.metrics.observe(svc.model_name, start=start, first=first, end=time.perf_counter(),
                            n_prompt=n_prompt, n_out=n_out)
    finally:
        await stream.aclose()  # client gone: cancel the request so its batch slot frees at once


async def _start(svc: Service, ids, params, n, adapter):
    return await svc.engine.generate(ids, params, n=n, adapter=adapter)


async def _collect(svc: Service, ids, params, n, adapter, request: Request) -> list[tuple[str, str, int]]:
    """Run to completion; a client that disconnects meanwhile cancels the request."""
    stream = await _start(svc, ids, params, n, adapter)
    texts, reasons, counts = [""] * n, [""] * n, [0] * n
    start, first = time.perf_counter(), None

    async def consume():
        nonlocal first
        async for d in stream:
            first = first or time.perf_counter()
            texts[d.index] += d.text
            if d.finish_reason is not None:
                reasons[d.index], counts[d.index] = _reason(d.finish_reason), d.completion_tokens

    async def watch():
        while not await request.is_disconnected():
            await asyncio.sleep(0.25)

    work, watcher = asyncio.create_task(consume()), asyncio.create_task(watch())
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not work.done():
            work.cancel()  # CancelledError inside the engine stream cancels the request there
            await asyncio.gather(work, return_exceptions=True)
    if work.cancelled():
        raise BadRequest("client disconnected")
    work.result()
    svc.metrics.observe(svc.model_name, start=start, first=first, end=time.perf_counter(),
                        n_prompt=len(ids), n_out=sum(counts))
    return list(zip(texts, reasons, counts))


def _reason(r: str | None) -> str | None:
    return {"cancelled": "stop", "error": "error"}.get(r, r) if r else r


def _usage(n_prompt: int, n_out: int) -> dict[str, int]:
    return {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}
