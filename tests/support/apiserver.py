"""A stand-in kube-apiserver on 127.0.0.1 for the pod status subresource, for tests only.

A real API server cannot run on this machine, so this follows its documented behaviour for the one
resource our runtime writes (Kubernetes API reference, "Pod" -> "read status" / "patch status"; API
concepts, "Patch"; "Authenticating" with bearer tokens; RBAC's 403 Status):

- HTTPS only, with a server certificate for 127.0.0.1 signed by a CA this module generates
  (a pod trusts the cluster CA from its mounted ServiceAccount's ca.crt);
- `Authorization: Bearer <token>`: a missing or unknown token is 401, a token without the verb on
  pods/status in that namespace is 403, both as `kind: Status` bodies;
- GET and PATCH `/api/v1/namespaces/{ns}/pods/{name}/status`; an unknown pod is 404;
- PATCH accepts the four patch media types and answers 415 for any other; a strategic merge patch
  merges `status.conditions` by `type` (PodStatus.conditions: patchMergeKey=type, patchStrategy=merge),
  merges maps key by key and replaces other lists; only `status` changes; resourceVersion moves.

    with ApiServer(tmp_path) as api:
        api.add_pod("team-a", "ws-0", labels={...})
        token_dir = api.service_account(tmp_path / "sa", "team-a", verbs=("get", "patch"))
"""
from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json",
               "application/json-patch+json", "application/apply-patch+yaml")
_STATUS_PATH = re.compile(r"^/api/v1/namespaces/([a-z0-9-]+)/pods/([a-z0-9.-]+)/status$")


@dataclass
class Call:
    method: str
    path: str
    content_type: str | None
    authorized: bool
    code: int
    body: Any = None


@dataclass
class Account:
    namespace: str
    name: str
    verbs: tuple[str, ...]


def _key_cert(cn: str, issuer=None, ca: bool = False):
    """(key, certificate) for `cn`, self-signed when `issuer` is None, else signed by (key, cert) `issuer`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    signer_key, signer_name = (key, name) if issuer is None else (issuer[0], issuer[1].subject)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(signer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                        critical=False)
    return key, builder.sign(signer_key, hashes.SHA256())


def _pem(key, cert) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization

    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


def strategic_merge_status(status: dict, patch: dict) -> dict:
    """PodStatus under a strategic merge patch: conditions by `type`, maps recursively, other lists replaced."""
    out = copy.deepcopy(status)
    for k, v in patch.items():
        if k == "conditions" and isinstance(v, list):
            merged = {c.get("type"): c for c in out.get("conditions") or []}
            order = [c.get("type") for c in out.get("conditions") or []]
            for c in v:
                t = c.get("type")
                if t not in merged:
                    order.append(t)
                merged[t] = {**merged.get(t, {}), **c}
            out["conditions"] = [merged[t] for t in order]
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = strategic_merge_status(out[k], v)
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass
class ApiServer:
    workdir: Path
    pods: dict[tuple[str, str], dict] = field(default_factory=dict)
    tokens: dict[str, Account] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # status codes to answer before serving normally

    def __enter__(self) -> "ApiServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = _key_cert("stand-in-kubernetes-ca", ca=True)
        server = _key_cert("kube-apiserver", issuer=ca)
        self.ca_pem = _pem(*ca)[1]
        key_pem, cert_pem = _pem(*server)
        (self.workdir / "server.key").write_bytes(key_pem)
        (self.workdir / "server.crt").write_bytes(cert_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.workdir / "server.crt", self.workdir / "server.key")
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- setup -------------------------------------------------------------------------------------
    def add_pod(self, namespace: str, name: str, labels: dict[str, str] | None = None,
                conditions: list[dict] | None = None) -> dict:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {}), "resourceVersion": "1",
                            "uid": f"uid-{namespace}-{name}"},
               "spec": {"containers": [{"name": "serve", "image": "runtime:1"}]},
               "status": {"phase": "Running", "conditions": list(conditions or [
                   {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T00:00:00Z"}])}}
        with self._lock:
            self.pods[(namespace, name)] = pod
        return pod

    def pod(self, namespace: str, name: str) -> dict:
        with self._lock:
            return copy.deepcopy(self.pods[(namespace, name)])

    def service_account(self, directory: Path, namespace: str, name: str = "runtime",
                        verbs: tuple[str, ...] = ("get", "patch"), token: str | None = None) -> Path:
        """Write a mounted ServiceAccount (token, ca.crt, namespace) whose token this server knows."""
        token = token or f"sa-token-{namespace}-{name}-{len(self.tokens)}"
        self.tokens[token] = Account(namespace, name, tuple(verbs))
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(token)
        (directory / "ca.crt").write_bytes(self.ca_pem)
        (directory / "namespace").write_text(namespace)
        return directory

    def environ(self, sa_dir: Path, namespace: str, pod: str) -> dict[str, str]:
        """The env a pod would have (the kubelet's service env, the downward API) plus our account override."""
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port),
                "POD_NAME": pod, "POD_NAMESPACE": namespace, "KAITO_SERVICE_ACCOUNT_DIR": str(sa_dir)}

    def patches(self, ok_only: bool = True) -> list[Call]:
        return [c for c in self.calls if c.method == "PATCH" and (c.code == 200 or not ok_only)]

    # -- HTTP ----------------------------------------------------------------------------------------
    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _status(self, code: int, reason: str, message: str) -> tuple[int, dict]:
                return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
                auth = self.headers.get("Authorization") or ""
                account = api.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
                code, body = self._answer(method, raw, ctype, account)
                parsed = None
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    pass
                with api._lock:
                    api.calls.append(Call(method, self.path, ctype, account is not None, code, parsed))
                self._send(code, body)

            def _answer(self, method, raw, ctype, account) -> tuple[int, dict]:
                if api.fail_next:
                    code = api.fail_next.pop(0)
                    return self._status(code, "ServiceUnavailable" if code == 503 else "InternalError",
                                        "the server is currently unable to handle the request")
                if account is None:
                    return self._status(401, "Unauthorized", "Unauthorized")
                m = _STATUS_PATH.match(self.path.split("?")[0])
                if m is None:
                    return self._status(404, "NotFound", "the server could not find the requested resource")
                ns, name = m.groups()
                verb = {"GET": "get", "PATCH": "patch"}.get(method, method.lower())
                if account.namespace != ns or verb not in account.verbs:
                    return self._status(403, "Forbidden",
                                        f'pods "{name}" is forbidden: User "system:serviceaccount:{account.namespace}:'
                                        f'{account.name}" cannot {verb} resource "pods/status" in API group "" '
                                        f'in the namespace "{ns}"')
                with api._lock:
                    pod = api.pods.get((ns, name))
                    if pod is None:
                        return self._status(404, "NotFound", f'pods "{name}" not found')
                    if method == "GET":
                        return 200, copy.deepcopy(pod)
                    if ctype not in PATCH_TYPES:
                        return self._status(415, "UnsupportedMediaType",
                                            f"the body of the request was in an unknown format - accepted media "
                                            f"types include: {', '.join(PATCH_TYPES)}")
                    if ctype != PATCH_TYPES[0]:
                        return self._status(415, "UnsupportedMediaType", "this stand-in merges strategic patches only")
                    try:
                        patch = json.loads(raw)
                    except ValueError as e:
                        return self._status(400, "BadRequest", f"error decoding patch: {e}")
                    pod["status"] = strategic_merge_status(pod["status"], patch.get("status") or {})
                    pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1)
                    return 200, copy.deepcopy(pod)

            def do_GET(self):
                self._serve("GET")

            def do_PATCH(self):
                self._serve("PATCH")

            def do_PUT(self):
                self._serve("PUT")

        return Handler
