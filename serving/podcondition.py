"""The adapters' availability as a condition on this replica's own pod, for the Workspace status (issue 14).

Why a custom pod condition (contract/podstatus.py): a failed fetch in a Workspace-driven change keeps
the old set serving, so the pod must stay Ready and in the Service. A termination message needs the
container to exit; a failing readiness probe takes the pod out of the Service; the kubelet reports no
probe body. A condition type the kubelet does not own is kept by it (it replaces only its own), is not
a readiness gate here, and reaches the Workspace status hook, which is sent the workspace's pods.

Pure part: `condition(unavailable, previous, now)` builds the condition body. IO part: `PodStatusReporter`
patches it onto `/api/v1/namespaces/{ns}/pods/{name}/status` (strategic merge patch: conditions merge
by type, so other conditions stay) with the pod's ServiceAccount token, on its own thread, only when
the condition changes, retrying with backoff. `from_environment()` is None outside a pod (`kaito up`
on a laptop): nothing is reported and nothing fails.
"""
from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from contract.podstatus import (
    ADAPTER_UNAVAILABLE, ADAPTERS_AVAILABLE, ADAPTERS_CONDITION, POD_NAME_ENV, POD_NAMESPACE_ENV, pod_condition,
)

log = logging.getLogger(__name__)

#: Where the kubelet mounts the pod's ServiceAccount token, CA bundle and namespace.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: Overrides SERVICE_ACCOUNT_DIR (tests; a runtime outside the kubelet's layout).
SERVICE_ACCOUNT_DIR_ENV = "KAITO_SERVICE_ACCOUNT_DIR"
PATCH_CONTENT_TYPE = "application/strategic-merge-patch+json"
#: Longest reason quoted per adapter, and the whole message (a Workspace condition quotes it).
REASON_CHARS = 300
MESSAGE_CHARS = 1500
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


# -- pure part ---------------------------------------------------------------------------------
def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def condition(unavailable: Mapping[str, str], previous: Mapping[str, Any] | None, now: str) -> dict[str, str]:
    """The pod condition for `unavailable` (adapter name -> why it does not serve its wanted version).

    `lastTransitionTime` is `previous`'s while the status stays the same, else `now` (RFC 3339)."""
    if unavailable:
        status, reason = "False", ADAPTER_UNAVAILABLE
        parts = [f"adapter {name} is unavailable: {_cut(unavailable[name], REASON_CHARS)}" for name in sorted(unavailable)]
        message = _cut("; ".join(parts), MESSAGE_CHARS)
    else:
        status, reason, message = "True", ADAPTERS_AVAILABLE, "every adapter is available"
    since = (previous or {}).get("lastTransitionTime") if (previous or {}).get("status") == status else None
    return {"type": ADAPTERS_CONDITION, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since or now}


def same(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Equal as far as a patch would change anything."""
    keys = ("type", "status", "reason", "message", "lastTransitionTime")
    return a is not None and b is not None and all(a.get(k) == b.get(k) for k in keys)


def status_patch(cond: Mapping[str, Any]) -> bytes:
    """The strategic merge patch body: PodStatus.conditions merges by `type`."""
    return json.dumps({"status": {"conditions": [dict(cond)]}}).encode()


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# -- IO part -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InCluster:
    """How to reach this pod's status: the API server's address, the pod and its credentials' files."""
    server: str
    namespace: str
    pod: str
    token_file: Path
    ca_file: Path

    @property
    def status_url(self) -> str:
        return f"{self.server}/api/v1/namespaces/{self.namespace}/pods/{self.pod}/status"


def in_cluster(environ: Mapping[str, str] = os.environ) -> InCluster | None:
    """The pod's API access as the kubelet provides it (KUBERNETES_SERVICE_HOST/PORT, the mounted
    ServiceAccount) and the downward-API pod name; None when any of it is missing (not in a pod)."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    pod = environ.get(POD_NAME_ENV)
    sa = Path(environ.get(SERVICE_ACCOUNT_DIR_ENV) or SERVICE_ACCOUNT_DIR)
    token, ca = sa / "token", sa / "ca.crt"
    if not (host and port and pod and token.is_file() and ca.is_file()):
        return None
    namespace = environ.get(POD_NAMESPACE_ENV)
    if not namespace:
        try:
            namespace = (sa / "namespace").read_text().strip()
        except OSError:
            return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return InCluster(f"https://{host}:{port}", namespace, pod, token, ca)


class PatchFailed(Exception):
    pass


class PodStatusReporter:
    """Keeps this pod's ADAPTERS_CONDITION equal to the latest `update()`; never blocks the caller."""

    def __init__(self, target: InCluster, *, timeout_s: float = 10.0, backoff_s: tuple[float, ...] = BACKOFF_S,
                 clock: Callable[[], float] = time.time):
        self.target = target
        self._timeout = timeout_s
        self._backoff = backoff_s
        self._clock = clock
        self._lock = threading.Lock()
        self._wanted: dict[str, str] | None = None  # latest unavailable set, not yet reported
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._on_pod: dict[str, Any] | None = None  # the condition as the pod has it (as far as we know)
        self._known = False  # _on_pod has been read from the API server or written by us
        self.patches = 0  # successful PATCH calls
        self._thread = threading.Thread(target=self._run, name="pod-condition", daemon=True)
        self._thread.start()

    def update(self, unavailable: Mapping[str, str]) -> None:
        with self._lock:
            self._wanted = dict(unavailable)
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    # -- the reporting thread --------------------------------------------------------------------
    def _run(self) -> None:
        import httpx

        failures = 0
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            with self._lock:
                wanted = self._wanted
            if wanted is None:
                continue
            try:
                # the CA file is read on every attempt, as the token is: both are rotated in place
                ctx = ssl.create_default_context(cafile=str(self.target.ca_file))
                with httpx.Client(verify=ctx, timeout=self._timeout) as client:
                    self._report(client, wanted)
                failures = 0
            except (PatchFailed, httpx.HTTPError, OSError, ssl.SSLError, ValueError) as e:
                delay = self._backoff[min(failures, len(self._backoff) - 1)]
                failures += 1
                log.warning("cannot set pod condition %s on %s/%s (retrying in %.0fs): %s", ADAPTERS_CONDITION,
                            self.target.namespace, self.target.pod, delay, e)
                if self._stop.wait(delay):
                    return
                self._wake.set()  # try again with whatever is wanted by then

    def _headers(self) -> dict[str, str]:
        token = self.target.token_file.read_text().strip()  # re-read: the kubelet rotates bound tokens
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def _report(self, client, wanted: dict[str, str]) -> None:
        if not self._known:
            r = client.get(self.target.status_url, headers=self._headers())
            _check(r, "GET")
            self._on_pod, self._known = pod_condition(r.json()), True
        cond = condition(wanted, self._on_pod, rfc3339(self._clock()))
        if same(cond, self._on_pod):
            return
        r = client.patch(self.target.status_url, content=status_patch(cond),
                         headers={**self._headers(), "Content-Type": PATCH_CONTENT_TYPE})
        _check(r, "PATCH")
        self._on_pod = pod_condition(r.json()) or cond
        self.patches += 1
        log.info("pod condition %s=%s: %s", ADAPTERS_CONDITION, cond["status"], cond["message"])


def _check(response, verb: str) -> None:
    """Raise with the status and the API server's Status message (never the request's headers)."""
    if response.status_code < 300:
        return
    try:
        detail = response.json().get("message") or ""
    except ValueError:
        detail = response.text[:200]
    raise PatchFailed(f"{verb} {response.request.url.path}: HTTP {response.status_code} {detail}".strip())


def from_environment(environ: Mapping[str, str] = os.environ) -> PodStatusReporter | None:
    """A reporter for this pod, or None outside a pod (nothing to report to)."""
    target = in_cluster(environ)
    if target is None:
        return None
    log.info("reporting adapter availability as pod condition %s on %s/%s", ADAPTERS_CONDITION,
             target.namespace, target.pod)
    return PodStatusReporter(target)
