"""The emulator's real HTTP transport against a stdlib server on loopback: success, timeout, errors."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from metacontroller.cluster import Cluster
from metacontroller.emulator import CompositeControllerEmulator

BEHAVIOUR = {"mode": "ok"}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = BEHAVIOUR["mode"]
        if mode == "slow":
            time.sleep(0.5)
        if mode == "429":
            self.send_response(429)
            self.send_header("Retry-After", "7")
            self.end_headers()
            return
        if mode == "500":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        name = body["parent"]["metadata"]["name"]
        reply = {"status": {"seen": name},
                 "children": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"m": mode}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def make(server):
    cc = {"apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController", "metadata": {"name": "c"},
          "spec": {"generateSelector": True,
                   "parentResource": {"apiVersion": "kaito.sh/v1alpha1", "resource": "workspaces"},
                   "childResources": [{"apiVersion": "v1", "resource": "configmaps",
                                       "updateStrategy": {"method": "InPlace"}}],
                   "hooks": {"sync": {"version": "v2", "webhook": {
                       "service": {"name": "hooks", "namespace": "sys"}, "path": "/sync", "timeout": "200ms"}}}}}
    cluster = Cluster()
    emu = CompositeControllerEmulator(cluster, cc, base_url=server)
    parent = cluster.create({"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace",
                             "metadata": {"name": "p", "namespace": "ns"}})
    return cluster, emu, parent


@pytest.mark.parametrize("mode,error", [("slow", "timed out"), ("500", "500")])
def test_timeouts_and_errors_change_nothing(server, mode, error):
    cluster, emu, parent = make(server)
    BEHAVIOUR["mode"] = "ok"
    assert emu.reconcile(parent).ok
    before = list(cluster.all_objects())
    BEHAVIOUR["mode"] = mode
    out = emu.reconcile(parent)
    assert not out.ok and error in out.error
    assert list(cluster.all_objects()) == before
    BEHAVIOUR["mode"] = "ok"


def test_ok_over_http(server):
    cluster, emu, parent = make(server)
    BEHAVIOUR["mode"] = "ok"
    out = emu.reconcile(parent)
    assert out.ok and out.created == ["ConfigMap/ns/p"]
    assert cluster.get("kaito.sh/v1alpha1", "Workspace", "p", "ns")["status"] == {"seen": "p", "observedGeneration": 1}


def test_429_requeues_after_retry_after_without_backoff(server):
    cluster, emu, parent = make(server)
    BEHAVIOUR["mode"] = "429"
    out = emu.reconcile_all(now=0.0)
    (outcome,) = out.values()
    assert not outcome.ok and outcome.retry_after == 7.0
    assert emu.reconcile_all(now=6.9) == {}  # not due yet, nothing changed
    BEHAVIOUR["mode"] = "ok"
    assert list(emu.reconcile_all(now=7.0).values())[0].ok
