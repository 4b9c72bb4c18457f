"""The one route table of the hook server, and how a request body becomes a reply.

Flask (`hooks.shell.app`) and the in-process transport of the emulated cluster (`hooks.tools.emulated`)
both serve exactly this table through `answer`, so a simulation sees the status codes a real
Metacontroller would: 400 for a body that is not JSON, 422 for a request whose shape is wrong
(the message names the JSON path), 500 for an internal error, and a 200 only with a reply the
core built completely (a 200 that leaves a child out deletes it).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel

from hooks.core import nodeprovisioner, sync_workspace
from hooks.core.protocol import CustomizeRequest, NodeProvisionerSyncRequest, WorkspaceSyncRequest
from hooks.core.settings import Settings
from hooks.core.errors import http_status
from metacontroller.api import Obj, decode, encode_reply

log = logging.getLogger("kaito.hooks")


@dataclass(frozen=True)
class Route:
    path: str
    #: metric label and Flask endpoint name
    name: str
    #: the request model `decode` checks the body against
    request: type[BaseModel]
    #: (decoded request, settings, now) -> reply
    handler: Callable[[BaseModel, Settings, str], Obj]


ROUTES = (
    Route("/workspace/customize", "workspace_customize", CustomizeRequest,
          lambda r, settings, now: sync_workspace.customize(r.raw["parent"], settings)),
    Route("/workspace/sync", "workspace_sync", WorkspaceSyncRequest,
          lambda r, settings, now: sync_workspace.sync(r.raw, settings, now)),
    Route("/nodeprovisioner/customize", "nodeprovisioner_customize", CustomizeRequest,
          lambda r, settings, now: nodeprovisioner.customize(r.raw["parent"])),
    Route("/nodeprovisioner/sync", "nodeprovisioner_sync", NodeProvisionerSyncRequest,
          lambda r, settings, now: nodeprovisioner.sync(r, settings, now)),
)
BY_PATH = {r.path: r for r in ROUTES}


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def answer(route: Route, body: bytes, settings: Settings, now: str) -> tuple[int, bytes]:
    """(HTTP status, JSON body) for one hook call: decode once, call the pure core, encode."""
    try:
        return 200, encode_reply(route.handler(decode(route.request, body), settings, now))
    except Exception as exc:  # never a 200 that could drop children: hooks.core.errors maps each error once
        status = http_status(exc)
        if status >= 500:
            log.exception("hook %s failed", route.name)
            return status, _error(f"{type(exc).__name__}: {exc}")
        return status, _error(str(exc))
