"""HTTP API: KAITO's /chat, the OpenAI routes and vLLM's adapter API over one `Facade`. Thin: decode
the body, call the facade (serving/facade.py), encode its answer as JSON or SSE.

Every failure before the first byte is a real HTTP status with the OpenAI error envelope; a stream
starts only after admission (so a 429 or a 400 is never hidden inside a 200 SSE body).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from . import jsonbody, protocol
from .errors import BadRequest, ClientDisconnected, MethodNotAllowed, ModelNotFound, RouteNotFound, ServingError
from .facade import Facade, Job

log = logging.getLogger(__name__)

MAX_BODY_BYTES = jsonbody.MAX_BODY_BYTES
# The POST routes and their request models (also their request bodies in /openapi.json)
_BODIES: dict[str, type] = {"/chat": protocol.KaitoChatRequest, "/v1/completions": protocol.CompletionRequest,
                            "/v1/chat/completions": protocol.ChatCompletionRequest,
                            "/v1/load_lora_adapter": protocol.LoadLoraAdapterRequest,
                            "/v1/unload_lora_adapter": protocol.UnloadLoraAdapterRequest}
# Status of a request whose client went away: never sent (nginx's convention), only counted.
_CLIENT_CLOSED = 499
_DISCONNECT_COUNTED = "kaito.disconnect_counted"  # ASGI scope key


def create_app(get_service: Callable[[], Facade], *,
               disconnect_errors: tuple[type[BaseException], ...] = ()) -> FastAPI:
    """`disconnect_errors`: what the host server raises from `receive()` once a client has gone (Ray
    Serve: TaskCancelledError); each is counted as a disconnect like Starlette's ClientDisconnect."""
    gone = (ClientDisconnect, ClientDisconnected, *disconnect_errors)
    app = FastAPI(title="kaito-ray serving", docs_url=None, redoc_url=None)
    app.add_middleware(_DisconnectGuard, get_service=get_service, gone=gone)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.openapi = lambda: _openapi(app)

    async def run(route: str, request: Request, handler, *, kaito: bool = False, admin: bool = False) -> Response:
        svc: Facade | None = None
        try:
            svc = get_service()
            if admin:
                _admin(svc, request)
            svc.require_ready()
            body = await _json_body(request)
            resp = await handler(svc, body, request)
        except ServingError as e:
            resp = _error(e, kaito=kaito)
        except gone:
            _count_disconnect(svc, route, request.scope)
            return Response(status_code=_CLIENT_CLOSED)
        except asyncio.CancelledError:  # Serve cancels a request whose client went away
            _count_disconnect(svc, route, request.scope)
            raise
        except Exception:  # noqa: BLE001 - a bug answers a 500 in the envelope, never a bare traceback page
            resp = _internal(route, kaito=kaito)
        if svc is not None:
            svc.count_request(route, resp.status_code)
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
            return _error(e)
        return {"status": "Healthy"}

    @app.get("/metrics")
    async def metrics():
        try:
            svc = get_service()
        except ServingError as e:
            return _error(e)
        return Response(svc.render_metrics(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        try:
            svc = get_service()
            svc.require_ready()
        except ServingError as e:
            return _error(e)
        created = int(time.time())
        data = []
        for card in svc.models():
            entry = {"id": card.id, "object": "model", "created": created, "owned_by": "kaito",
                     "root": card.source, "parent": card.parent}
            if card.parent is not None:  # an adapter: what it is and whether it serves
                entry.update(source=card.source, digest=card.digest, available=card.available)
                if card.reason:
                    entry["reason"] = card.reason
            data.append(entry)
        return {"object": "list", "data": data}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        listing = await models()
        if isinstance(listing, Response):
            return listing
        for m in listing["data"]:
            if m["id"] == model_id:
                return m
        return _error(ModelNotFound(f"model {model_id!r} does not exist", param="model"))

    @app.post("/chat")
    async def chat(request: Request):
        return await run("/chat", request, _kaito_chat, kaito=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await run("/v1/completions", request, _completions)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await run("/v1/chat/completions", request, _chat_completions)

    # vLLM's runtime adapter API (what AIBrix's controller calls): off unless the Serve args enable it
    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request):
        return await run("/v1/load_lora_adapter", request, _load_lora_adapter, admin=True)

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request):
        return await run("/v1/unload_lora_adapter", request, _unload_lora_adapter, admin=True)

    return app


def _error(e: ServingError, *, kaito: bool = False) -> JSONResponse:
    content = e.envelope()
    if kaito:
        content = {"detail": e.message, **content}  # KAITO clients read "detail"
    return JSONResponse(content, status_code=e.status, headers=e.headers())


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own 404/405 (no such route or method), in the OpenAI envelope as OpenAI words them."""
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        err: ServingError = RouteNotFound(f"Invalid URL ({where})")
    elif exc.status_code == 405:
        err = MethodNotAllowed(f"Invalid method for URL ({where})", allow=(exc.headers or {}).get("Allow", ""))
    else:
        err = ServingError(str(exc.detail))
        err.status, err.type = exc.status_code, "invalid_request_error"
    return _error(err)


async def _internal_error(request: Request, exc: Exception) -> Response:
    return _internal(request.url.path, exc=exc)


def _internal(route: str, *, kaito: bool = False, exc: BaseException | None = None) -> JSONResponse:
    """A bug: logged with its traceback, answered as a 500 in the envelope that names no detail."""
    log.error("internal error on %s", route, exc_info=exc or True)
    return _error(ServingError("internal error; the server log has the details"), kaito=kaito)


def _count_disconnect(svc: Facade | None, route: str, scope: dict) -> None:
    """Once per request: a stream cancelled by the server can also fail its next receive()."""
    if scope.get(_DISCONNECT_COUNTED):
        return
    scope[_DISCONNECT_COUNTED] = True
    log.debug("client went away during %s", route)
    if svc is not None:
        svc.count_disconnect(route)


class _DisconnectGuard:
    """Pure ASGI middleware: a client that goes away mid-stream (Starlette raises ClientDisconnect once a
    write fails; Ray Serve's receive() raises TaskCancelledError) is a debug line and a counter, not a
    500 with a traceback."""

    def __init__(self, app, get_service: Callable[[], Facade], gone: tuple[type[BaseException], ...]):
        self.app, self.get_service, self.gone = app, get_service, gone

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        except self.gone:
            path = scope.get("path", "")
            route = next((r for r in _BODIES if path.endswith(r)), "other")
            try:
                svc = self.get_service()
            except ServingError:
                svc = None
            _count_disconnect(svc, route, scope)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request bodies the POST routes decode themselves (for clients and
    schemathesis), and the error envelope every 4xx/5xx uses."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorEnvelope"] = _ENVELOPE_SCHEMA
    error = {"description": "OpenAI error envelope",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}}
    for path, model in _BODIES.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
        op = schema["paths"][path]["post"]
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        op["responses"] = {"200": op["responses"]["200"], "default": error}
    app.openapi_schema = schema
    return schema


_ENVELOPE_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type", "param", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}


async def _json_body(request: Request) -> Any:
    jsonbody.check_media_type(request.headers.get("content-type"))
    jsonbody.check_declared_size(request.headers.get("content-length"))
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise jsonbody.size_exceeded()
    return jsonbody.loads(bytes(raw))


# -- KAITO /chat ------------------------------------------------------------------------------------

async def _kaito_chat(svc: Facade, body: Any, request: Request) -> Response:
    if isinstance(body, dict) and not body.get("prompt"):
        raise BadRequest("Text generation parameter prompt required", param="prompt")
    req = protocol.parse(protocol.KaitoChatRequest, body)
    job = svc.prepare_kaito(req)
    text = "" if job.empty else (await _collect(svc, job, request))[0][0]
    if req.clean_up_tokenization_spaces:
        text = svc.clean_up_spaces(text)
    return JSONResponse({"Result": (req.prompt + text) if req.return_full_text else text})


# -- OpenAI -----------------------------------------------------------------------------------------

async def _completions(svc: Facade, body: Any, request: Request) -> Response:
    req = protocol.parse(protocol.CompletionRequest, body)
    job = svc.prepare_completion(req)
    prefix = req.prompt_text() if req.echo else ""
    return await _respond(svc, req, job, request, kind="text_completion", prefix=prefix)


async def _chat_completions(svc: Facade, body: Any, request: Request) -> Response:
    req = protocol.parse(protocol.ChatCompletionRequest, body)
    return await _respond(svc, req, svc.prepare_chat(req), request, kind="chat.completion")


async def _respond(svc: Facade, req, job: Job, request: Request, *, kind: str, prefix: str = "") -> Response:
    rid = ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + uuid.uuid4().hex[:24]
    created = int(time.time())
    if not req.stream:
        outs = await _collect(svc, job, request)
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
                             "choices": choices, "usage": _usage(job.n_prompt, n_out)})
    stream = await svc.generate(job, batched=True)  # 429 here, before the 200
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return StreamingResponse(_sse(svc, stream, rid, created, req, kind, job.n_prompt, include_usage, prefix,
                                  request.scope),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


# -- vLLM's runtime adapter API ---------------------------------------------------------------------

def _admin(svc: Facade, request: Request) -> None:
    if not svc.adapter_api:  # off: the route is not there, as far as a client can tell
        raise RouteNotFound(f"Invalid URL ({request.method} {request.url.path})")
    svc.check_admin_token(request.headers.get("authorization"))


async def _load_lora_adapter(svc: Facade, body: Any, request: Request) -> Response:
    req = protocol.parse(protocol.LoadLoraAdapterRequest, body)
    await svc.load_adapter(req.lora_name, req.lora_path)
    return Response(f"Success: LoRA adapter '{req.lora_name}' added successfully.", media_type="text/plain")


async def _unload_lora_adapter(svc: Facade, body: Any, request: Request) -> Response:
    req = protocol.parse(protocol.UnloadLoraAdapterRequest, body)
    await svc.unload_adapter(req.lora_name)
    return Response(f"Success: LoRA adapter '{req.lora_name}' removed successfully.", media_type="text/plain")


async def _sse(svc, stream, rid, created, req, kind, n_prompt, include_usage, prefix,
               scope: dict) -> AsyncIterator[bytes]:
    chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else "text_completion"
    n_out = 0

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
        async for batch in stream:  # everything already generated goes out in one write, one event per choice
            merged: dict[int, list] = {}  # choice index -> [text, finish reason]
            for d in batch:
                if d.finish_reason is not None:
                    n_out += d.completion_tokens
                m = merged.setdefault(d.index, ["", None])
                m[0] += d.text
                m[1] = d.finish_reason or m[1]
            out = [chunk(i, text, _reason(reason)) for i, (text, reason) in merged.items() if text or reason]
            if out:
                yield b"".join(out)
        if include_usage:
            obj = {"id": rid, "object": chunk_kind, "created": created, "model": req.model, "choices": [],
                   "usage": _usage(n_prompt, n_out)}
            yield b"data: " + json.dumps(obj).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    except asyncio.CancelledError:  # the server cancels the stream when its client goes away (ASGI < 2.4, Serve)
        _count_disconnect(svc, "/v1/chat/completions" if kind == "chat.completion" else "/v1/completions", scope)
        raise
    finally:
        await stream.aclose()  # client gone: cancel the request so its batch slot frees at once


async def _collect(svc: Facade, job: Job, request: Request) -> list[tuple[str, str, int]]:
    """Run to completion; a client that disconnects meanwhile cancels the request."""
    stream = await svc.generate(job)
    texts, reasons, counts = [""] * job.n, [""] * job.n, [0] * job.n

    async def consume():
        async for d in stream:
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
        raise ClientDisconnected()
    work.result()
    return list(zip(texts, reasons, counts))


def _reason(r: str | None) -> str | None:
    return {"cancelled": "stop", "error": "error"}.get(r, r) if r else r


def _usage(n_prompt: int, n_out: int) -> dict[str, int]:
    return {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}
