"""The hook server: `gunicorn hooks.shell.app:app`. Serves `hooks.core.routes.ROUTES`; nothing else.

`hooks.core.routes.answer` decodes, calls the pure core and encodes; this module adds only Flask,
metrics and the GC pause. Every failure answers non-200 (Metacontroller then changes nothing).
"""
from __future__ import annotations

import gc
import time
from datetime import datetime, timezone
from typing import Callable

from flask import Flask, Response, request

from hooks.shell.metrics import ERRORS, LATENCY, render
from hooks.core.routes import ROUTES, Route, answer
from hooks.core.settings import Settings

SETTINGS = Settings.from_env()
app = Flask(__name__)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _view(route: Route) -> Callable[[], Response]:
    def view() -> Response:
        start = time.perf_counter()
        # A NodeProvisioner request holds every Workspace and Node: building its reply allocates
        # enough objects to trigger repeated full GC passes over that big request (2-3x the time).
        # The request's objects are freed by reference counting; cycles wait for the next request.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            status, body = answer(route, request.get_data(cache=False), SETTINGS, now())
        finally:
            if gc_was_enabled:
                gc.enable()
            LATENCY.labels(route.name).observe(time.perf_counter() - start)
        if status != 200:
            ERRORS.labels(route.name, str(status)).inc()
        return Response(body, status, mimetype="application/json")

    return view


for _route in ROUTES:
    app.add_url_rule(_route.path, _route.name, _view(_route), methods=["POST"])


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", 200, mimetype="text/plain")


@app.get("/metrics")
def metrics() -> Response:
    payload, content_type = render()
    return Response(payload, 200, content_type=content_type)
