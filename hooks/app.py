"""The hook server: `gunicorn hooks.app:app`. Decodes, calls the pure core, encodes; nothing else.

Every failure answers non-200 (Metacontroller then changes nothing): 400 for a body that is not
JSON, 422 for a request missing what the protocol requires, 500 (logged) for anything else.
A 200 is only ever sent with a reply the core built completely.
"""
from __future__ import annotations

import gc
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable

from flask import Flask, Response, request

from hooks import nodeprovisioner, sync_workspace
from hooks.metrics import ERRORS, LATENCY, render
from hooks.settings import Settings

log = logging.getLogger("kaito.hooks")
SETTINGS = Settings.from_env()
app = Flask(__name__)


class BadRequest(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(need: tuple[str, ...]) -> dict:
    try:
        body = json.loads(request.get_data(cache=False))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest(422, "request body must be a JSON object")
    for key in need:
        if not isinstance(body.get(key), dict):
            raise BadRequest(422, f"request field {key!r} is missing or not an object")
    meta = body["parent"].get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise BadRequest(422, "request field 'parent.metadata.name' is missing")
    for key in ("children", "related"):
        groups = body.get(key)
        if groups is None:
            continue
        if not isinstance(groups, dict):
            raise BadRequest(422, f"request field {key!r} must be an object keyed Kind.apiVersion")
        for group, objects in groups.items():
            if objects is None:
                continue
            if not isinstance(objects, dict) or not all(
                    isinstance(o, dict) and isinstance(o.get("metadata"), dict) for o in objects.values()):
                raise BadRequest(422, f"request field {key}[{group!r}] must map names to objects with metadata")
    return body


def _endpoint(name: str, need: tuple[str, ...], handler: Callable[[dict], Any]) -> Response:
    start = time.perf_counter()
    # A NodeProvisioner request holds every Workspace and Node: building its reply allocates
    # enough objects to trigger repeated full GC passes over that big request (2-3x the time).
    # The request's objects are freed by reference counting; cycles wait for the next request.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        reply = handler(_body(need))
        return Response(json.dumps(reply, separators=(",", ":")), 200, mimetype="application/json")
    except BadRequest as exc:
        ERRORS.labels(name, str(exc.code)).inc()
        return Response(json.dumps({"error": str(exc)}), exc.code, mimetype="application/json")
    except Exception as exc:  # never a 200 that could drop children
        log.exception("hook %s failed", name)
        ERRORS.labels(name, "500").inc()
        return Response(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), 500, mimetype="application/json")
    finally:
        if gc_was_enabled:
            gc.enable()
        LATENCY.labels(name).observe(time.perf_counter() - start)


@app.post("/workspace/customize")
def workspace_customize() -> Response:
    return _endpoint("workspace_customize", ("parent",), lambda b: sync_workspace.customize(b["parent"], SETTINGS))


@app.post("/workspace/sync")
def workspace_sync() -> Response:
    return _endpoint("workspace_sync", ("parent",), lambda b: sync_workspace.sync(b, SETTINGS, now()))


@app.post("/nodeprovisioner/customize")
def nodeprovisioner_customize() -> Response:
    return _endpoint("nodeprovisioner_customize", ("parent",), lambda b: nodeprovisioner.customize(b["parent"]))


@app.post("/nodeprovisioner/sync")
def nodeprovisioner_sync() -> Response:
    return _endpoint("nodeprovisioner_sync", ("parent",), lambda b: nodeprovisioner.sync(b, now()))


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", 200, mimetype="text/plain")


@app.get("/metrics")
def metrics() -> Response:
    payload, content_type = render()
    return Response(payload, 200, content_type=content_type)
