import base64
import json

import pytest

from artifacts import ArtifactError
from artifacts.auth import (
    credentials_from_config,
    find_docker_config,
    load_credentials,
    normalize_registry_key,
    parse_challenge,
    use_plain_http,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auth_field_and_username_password_and_identity_token():
    config = {
        "auths": {
            "myacr.azurecr.io": {"auth": b64("user:pa:ss")},
            "https://index.docker.io/v1/": {"username": "hubuser", "password": "hubpass"},
            "http://127.0.0.1:5000/v2/": {"identitytoken": "refresh-token"},
        }
    }
    acr = credentials_from_config(config, "myacr.azurecr.io", "cfg")
    assert (acr.username, acr.password) == ("user", "pa:ss")  # only the first colon splits
    assert acr.basic_header() == "Basic " + b64("user:pa:ss")
    hub = credentials_from_config(config, "docker.io")
    assert (hub.username, hub.password) == ("hubuser", "hubpass")
    local = credentials_from_config(config, "127.0.0.1:5000")
    assert local.identity_token == "refresh-token" and local.basic_header() is None
    assert credentials_from_config(config, "ghcr.io") is None


def test_secrets_are_not_in_repr_or_errors():
    creds = credentials_from_config({"auths": {"r.io": {"auth": b64("u:topsecret")}}}, "r.io")
    assert "topsecret" not in repr(creds)
    with pytest.raises(ArtifactError) as err:
        credentials_from_config({"auths": {"r.io": {"auth": b64("no-colon-secret")}}}, "r.io", "cfg.json")
    assert "no-colon-secret" not in str(err.value) and "'r.io'" in str(err.value)


def test_registry_keys_normalise():
    assert normalize_registry_key("https://index.docker.io/v1/") == "docker.io"
    assert normalize_registry_key("registry-1.docker.io") == "docker.io"
    assert normalize_registry_key("http://LOCALHOST:5000/v2/") == "localhost:5000"


def test_config_location_order(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {"r.io": {"auth": b64("home:1")}}}))
    mounted = tmp_path / "secret"
    mounted.mkdir()
    (mounted / "config.json").write_text(json.dumps({"auths": {"r.io": {"auth": b64("mounted:2")}}}))
    explicit = tmp_path / "explicit.json"
    explicit.write_text(json.dumps({"auths": {"r.io": {"username": "explicit", "password": "3"}}}))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    assert load_credentials("r.io").username == "home"
    monkeypatch.setenv("DOCKER_CONFIG", str(mounted))
    assert load_credentials("r.io").username == "mounted"
    assert load_credentials("r.io", explicit).username == "explicit"
    assert load_credentials("r.io", mounted).username == "mounted"  # a directory holding config.json
    with pytest.raises(ArtifactError, match="does not exist"):
        find_docker_config(tmp_path / "missing.json")


def test_invalid_json_config_does_not_quote_its_content(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"auths": {"r.io": {"auth": "c2VjcmV0OnZhbHVl"}')
    with pytest.raises(ArtifactError, match="not valid JSON") as err:
        load_credentials("r.io", bad)
    assert "c2VjcmV0" not in str(err.value)


def test_challenges():
    c = parse_challenge('Bearer realm="https://auth.example.io/token",service="registry.example.io",scope="repository:a/b:pull,push"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example.io/token", "service": "registry.example.io", "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="kaito-test"') .params == {"realm": "kaito-test"}
    assert parse_challenge("Bearer realm=https://x/token,service=reg").params["service"] == "reg"


def test_insecure_rules():
    env = {"KAITO_INSECURE_REGISTRIES": "127.0.0.1:5000, registry.local:80"}
    assert use_plain_http("127.0.0.1:5000", None, env)
    assert use_plain_http("registry.local:80", None, env)
    assert not use_plain_http("127.0.0.1:5001", None, env)  # host:port must match exactly
    assert not use_plain_http("myacr.azurecr.io", None, env)
    assert not use_plain_http("127.0.0.1:5000", False, env)  # explicit False wins
    assert use_plain_http("myacr.azurecr.io", True, {})
    assert not use_plain_http("localhost:5000", None, {})  # loopback is not special
