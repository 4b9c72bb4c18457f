"""The Bearer-token handshake against a registry + token service played by httpx.MockTransport."""
import base64
import json

import httpx
import pytest

from artifacts import NotFound, RegistryError, Unauthorized
from artifacts.auth import Credentials
from artifacts.reference import parse_oci
from artifacts.registry import RegistryClient

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:" + "4" * 64, "size": 2},
                       "layers": []}).encode()


def registry_app(realm: str, user: str = "u", password: str = "p", log: list | None = None):
    calls = [] if log is None else log

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.url.path == "/token":
            if request.headers.get("authorization") != "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode():
                return httpx.Response(401, json={"details": "bad credentials"})
            assert request.url.params.get_list("scope")[0] == "repository:team/adapter:pull"
            assert request.url.params["service"] == "registry.example.io"
            return httpx.Response(200, json={"token": "T0KEN"})
        if request.headers.get("authorization") != "Bearer T0KEN":
            return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="registry.example.io",scope="repository:team/adapter:pull"'})
        if request.url.path.endswith("/manifests/missing"):
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
        return httpx.Response(200, content=MANIFEST, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})

    return handler, calls


def client(realm: str, creds: Credentials | None, log=None, ref="registry.example.io/team/adapter:1") -> RegistryClient:
    handler, _ = registry_app(realm, log=log)
    return RegistryClient(parse_oci(ref), transport=httpx.MockTransport(handler), credentials=creds, insecure=False)


def test_bearer_flow_fetches_a_token_once_and_sends_it_up_front():
    log = []
    with client("https://auth.example.io/token", Credentials("u", "p", source="cfg"), log) as c:
        data, ctype, digest = c.get_manifest()
        assert data == MANIFEST and digest.startswith("sha256:")
        c.get_manifest()
    assert [r.url.path for r in log] == ["/v2/team/adapter/manifests/1", "/token", "/v2/team/adapter/manifests/1", "/v2/team/adapter/manifests/1"]
    assert all(r.url.scheme == "https" for r in log)


def test_bearer_wrong_credentials_are_unauthorized_without_secrets():
    with client("https://auth.example.io/token", Credentials("u", "sup3r-secret", source="/mnt/secret/config.json")) as c:
        with pytest.raises(Unauthorized) as err:
            c.get_manifest()
    msg = str(err.value)
    assert "registry.example.io/team/adapter:1" in msg and "/mnt/secret/config.json" in msg
    assert "sup3r-secret" not in msg and base64.b64encode(b"u:sup3r-secret").decode() not in msg


def test_no_credentials_says_so():
    with client("https://auth.example.io/token", None) as c:
        with pytest.raises(Unauthorized, match="no credentials for registry.example.io"):
            c.get_manifest()


def test_not_found_names_the_reference():
    with client("https://auth.example.io/token", Credentials("u", "p"), ref="registry.example.io/team/adapter:missing") as c:
        with pytest.raises(NotFound, match="registry.example.io/team/adapter:missing.*MANIFEST_UNKNOWN"):
            c.get_manifest()


@pytest.mark.parametrize("realm, fragment", [
    ("http://auth.example.io/token", "plain HTTP"),
    ("https://169.254.169.254/token", "forbidden address"),
    ("file:///etc/passwd", "invalid token realm"),
])
def test_token_realm_must_be_safe(realm, fragment):
    """Credentials go to the realm, so a registry cannot point them at plain HTTP or a metadata address."""
    with client(realm, Credentials("u", "p")) as c:
        with pytest.raises(RegistryError, match=fragment):
            c.get_manifest()


def test_basic_challenge_uses_basic_credentials():
    seen = []

    def handler(request):
        seen.append(request.headers.get("authorization"))
        if request.headers.get("authorization") != "Basic " + base64.b64encode(b"u:p").decode():
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})
        return httpx.Response(200, content=MANIFEST, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})

    with RegistryClient(parse_oci("r.example.io/a:1"), transport=httpx.MockTransport(handler), credentials=Credentials("u", "p")) as c:
        c.get_manifest()
        c.get_manifest()
    assert seen[0] is None and seen[1].startswith("Basic ") and seen[2].startswith("Basic ")
