"""Registry credentials from a Docker config JSON, and WWW-Authenticate challenge parsing (pure but for file reads).

The Docker config is the format of Kubernetes `imagePullSecrets` / `imagePushSecret` (`.dockerconfigjson`):
`{"auths": {"myacr.azurecr.io": {"auth": base64("user:pass")}}}` or with `username`/`password`, or an
`identitytoken` (an OAuth2 refresh token). Located by an explicit path (file or directory), then
`$DOCKER_CONFIG/config.json`, then `~/.docker/config.json`. Credential helpers (`credsStore`,
`credHelpers`) need binaries that pods do not have, so they are ignored.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArtifactError
from .reference import DOCKER_HUB

_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True)
class Credentials:
    """What to send to a registry. `repr` never shows the secret parts."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    source: str = ""  # the config file they came from, for error messages

    def basic_header(self) -> str | None:
        if self.username is None or self.password is None:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def find_docker_config(explicit: str | os.PathLike | None = None, env: dict | None = None) -> Path | None:
    """The config file to read, or None when there is none. An explicit path must exist."""
    env = os.environ if env is None else env
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ArtifactError(f"docker config {path} does not exist")
        return path
    candidates = []
    if env.get("DOCKER_CONFIG"):
        candidates.append(Path(env["DOCKER_CONFIG"]).expanduser() / "config.json")
    candidates.append(Path("~/.docker/config.json").expanduser())
    return next((p for p in candidates if p.is_file()), None)


def normalize_registry_key(key: str) -> str:
    """`https://index.docker.io/v1/` -> `docker.io`; `http://host:5000/v2/` -> `host:5000`."""
    host = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", key.strip()).split("/", 1)[0].lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def _entry_credentials(entry: dict, source: str, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    username, password = entry.get("username"), entry.get("password")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"], validate=False).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            # The message names the entry, never its value.
            raise ArtifactError(f"docker config {source}: the 'auth' field of {key!r} is not base64 of 'user:password'") from exc
        if ":" not in decoded:
            raise ArtifactError(f"docker config {source}: the 'auth' field of {key!r} is not base64 of 'user:password'")
        username, password = decoded.split(":", 1)
    token = entry.get("identitytoken") or entry.get("identityToken")
    if username is None and password is None and not token:
        return None
    return Credentials(username=username, password=password, identity_token=token or None, source=source)


def credentials_from_config(config: dict, registry: str, source: str = "docker config") -> Credentials | None:
    """Pick the `auths` entry for a registry host (pure)."""
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        raise ArtifactError(f"{source}: 'auths' must be a mapping of registry host to credentials")
    wanted = normalize_registry_key(registry)
    for key, entry in auths.items():
        if normalize_registry_key(key) == wanted:
            creds = _entry_credentials(entry, source, key)
            if creds is not None:
                return creds
    return None


def load_credentials(registry: str, docker_config: str | os.PathLike | None = None, env: dict | None = None) -> Credentials | None:
    path = find_docker_config(docker_config, env)
    if path is None:
        return None
    try:
        config = json.loads(path.read_text())
    except OSError as exc:
        raise ArtifactError(f"docker config {path} cannot be read: {exc.strerror}") from exc
    except ValueError:
        # `from None`: the JSON decoder's message quotes the document, which holds secrets.
        raise ArtifactError(f"docker config {path} is not valid JSON") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"docker config {path} must hold a JSON object")
    return credentials_from_config(config, registry, source=str(path))


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "bearer" or "basic"
    params: dict[str, str]


_PARAM_RE = re.compile(r'([a-zA-Z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> Challenge:
    """Parse `Bearer realm="https://auth/token",service="reg",scope="repository:x:pull"` (RFC 7235)."""
    header = header.strip()
    scheme, _, rest = header.partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"') for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme=scheme.lower(), params=params)


def insecure_registries(env: dict | None = None) -> set[str]:
    env = os.environ if env is None else env
    return {item.strip().lower() for item in env.get("KAITO_INSECURE_REGISTRIES", "").split(",") if item.strip()}


def use_plain_http(registry: str, insecure: bool | None = None, env: dict | None = None) -> bool:
    """HTTPS unless the caller says insecure=True, or the host:port is listed in KAITO_INSECURE_REGISTRIES.

    An explicit insecure=False forces HTTPS even for listed registries.
    """
    if insecure is not None:
        return bool(insecure)
    return registry.lower() in insecure_registries(env)
