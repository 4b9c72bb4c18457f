"""The Serve config file: Ray Serve's config-file shape around `ServeArgs`, and where the pod finds it.

The hooks write it into ConfigMap `<ws>` under `SERVE_CONFIG_KEY`; the pod mounts that ConfigMap at
`SERVE_CONFIG_DIR`, so the head reads `SERVE_CONFIG_PATH` (and sees edits there without a restart:
the kubelet refreshes a ConfigMap volume in place). The adapter prefetch init container reads the
same file (`kaito pull --from-serve-config`).
"""
from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from .ports import SERVE_PORT
from .serveargs import ServeArgs, ServeArgsError

__all__ = ["SERVE_CONFIG_DIR", "SERVE_CONFIG_KEY", "SERVE_CONFIG_PATH", "APP_IMPORT_PATH", "HttpOptions",
           "ServeApplication", "ServeConfig", "load_serve_config"]

SERVE_CONFIG_DIR = "/mnt/config"
SERVE_CONFIG_KEY = "serve_config.yaml"
SERVE_CONFIG_PATH = f"{SERVE_CONFIG_DIR}/{SERVE_CONFIG_KEY}"
#: The application builder the config names (serving/app.py).
APP_IMPORT_PATH = "serving.app:build"


class HttpOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    host: str = Field(default="0.0.0.0", description="address Serve's HTTP proxy binds")
    port: int = Field(default=SERVE_PORT, description="Serve's HTTP port in the pod")


class ServeApplication(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(default="default", description="Serve application name")
    route_prefix: str = Field(default="/", description="HTTP path prefix of the application")
    import_path: str = Field(default=APP_IMPORT_PATH, description="module:builder of the application")
    args: ServeArgs = Field(description="the builder's arguments")


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    proxy_location: str = Field(default="EveryNode", description="where Serve runs HTTP proxies")
    http_options: HttpOptions = Field(default_factory=HttpOptions)
    applications: list[ServeApplication] = Field(min_length=1, description="the applications to deploy")

    def dump(self) -> dict[str, Any]:
        """The file's content: every field set explicitly (serving fills the rest from the model's defaults)."""
        return self.model_dump(mode="json", exclude_unset=True)


def load_serve_config(path: str) -> ServeConfig:
    """Read and validate a Serve config file; errors name the file and the field."""
    try:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    except OSError as e:
        raise ServeArgsError(f"{path}: cannot read the Serve config: {e.strerror or e}", param="config") from e
    except yaml.YAMLError as e:
        raise ServeArgsError(f"{path}: not valid YAML: {e}", param="config") from e
    if not isinstance(raw, dict) or not raw.get("applications"):
        raise ServeArgsError(f"{path}: a Serve config with at least one entry under 'applications' is required",
                             param="applications")
    for i, app in enumerate(raw["applications"]):
        if isinstance(app, dict):
            try:
                ServeArgs.from_dict(app.get("args"))
            except ServeArgsError as e:
                raise ServeArgsError(f"{path}: applications[{i}].{e}", param=f"applications.{i}.args.{e.param}") from e
    return ServeConfig.model_validate(raw)
