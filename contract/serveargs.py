"""The Serve application's arguments: what the hooks write into the Workspace ConfigMap and serving runs.

One pydantic model for both ends. `hooks` builds a `ServeArgs` from the Workspace and dumps it into
the Serve config (`contract.serveconfig`); `serving.config` validates the file's `args:` map with
the same model (`ServeArgs.from_dict`), so a field the hooks write is a field serving accepts.
Unknown keys are refused, naming the field.

Adapters are runtime state, not pod-template state: the list (name, source, strength) travels
here, and replicas fetch and load it themselves (issue 14). The fields in `LIVE_FIELDS` apply to a
running endpoint without a restart; the hooks leave them out of the pod template's config hash,
so editing adapters never rolls a pod.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["AdapterArg", "ServeArgs", "ServeArgsError", "LIVE_FIELDS", "ADAPTER_API_TOKEN_ENV", "DEFAULT_STRENGTH",
           "ADAPTER_NAME_PATTERN"]

#: The env var holding the bearer token of the runtime adapter API (never in the config map).
ADAPTER_API_TOKEN_ENV = "KAITO_ADAPTER_API_TOKEN"
#: An adapter's weight when the Workspace gives no strength (or an empty one): KAITO's "1.0".
DEFAULT_STRENGTH = 1.0
#: Served adapter names: what clients put in `model` (KAITO allows any case and dots).
ADAPTER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
#: ServeArgs fields a running endpoint applies live (Serve reconfigure); changing them restarts nothing.
LIVE_FIELDS = frozenset({"adapters", "adapter_refresh", "adapter_resolve_interval_s"})


class ServeArgsError(ValueError):
    """Invalid Serve arguments; `param` is the dotted field path (or "args" for the whole map)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class AdapterArg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=ADAPTER_NAME_PATTERN, description="model name clients use")
    source: str = Field(min_length=1, description=(
        "where the adapter comes from: a local directory holding adapter_config.json, "
        "oci://REGISTRY/REPO:TAG[@sha256:...] or hf://REPO[@REV]"))
    strength: float = Field(default=DEFAULT_STRENGTH, ge=0.0, le=1.0, description="weight in the /chat combination")
    docker_config: str | None = Field(default=None, description=(
        "directory holding a config.json with this adapter's registry credentials (a mounted pull "
        "secret); default: the process's DOCKER_CONFIG"))


class ServeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    preset: str | None = Field(default=None, description="preset name from the catalog")
    model: str | None = Field(default=None, description="local dir, oci:// or hf:// source; default: preset's")
    served_model_name: str | None = Field(default=None, description="name in /v1/models; default: preset name")
    adapters: list[AdapterArg] = Field(default_factory=list, description=(
        "the registered adapter set (names unique, at most max_adapters); applied live"))
    max_adapters: int = Field(default=64, ge=0, description="bound of the registered adapter set")
    max_resident_adapters: int = Field(default=8, ge=1, description=(
        "adapters loaded in memory at once per replica; the least recently used is evicted"))
    adapter_cold_wait_s: float = Field(default=2.0, ge=0, description=(
        "how long a request for a non-resident adapter waits, while every resident adapter has running "
        "requests, before the least recently used one stops taking new requests so it can be evicted for it"))
    adapter_resolve_interval_s: float = Field(default=60.0, ge=0, description=(
        "how often adapter tags are re-resolved to digests, in seconds; 0 = never; applied live"))
    adapter_refresh: str | None = Field(default=None, description=(
        "opaque token copied from the Workspace annotation kaito.sh/adapter-refresh; a change means "
        "'re-resolve adapter tags now'"))
    adapter_api: bool = Field(default=False, description=(
        "serve POST /v1/load_lora_adapter and /v1/unload_lora_adapter (bearer token from the env var "
        f"{ADAPTER_API_TOKEN_ENV} when set)"))
    num_replicas: int = Field(default=1, ge=1, description="one replica per GPU node")
    gpus_per_replica: float = Field(default=0, ge=0)
    cpus_per_replica: float = Field(default=1, gt=0)
    trust_remote_code: bool = False
    dtype: Literal["float32", "float16", "bfloat16"] | None = None
    max_batch_size: int = Field(default=32, ge=1, description="running sequences per replica")
    max_queue: int = Field(default=128, ge=0, description="waiting sequences per replica before 429")
    max_model_len: int | None = Field(default=None, ge=16)
    num_threads: int | None = Field(default=None, ge=1, description="torch threads per replica; default: this machine's cores / num_replicas, less one, at least 1 (serving.service.default_threads)")
    autoscaling: dict[str, Any] | None = Field(default=None, description="Ray Serve autoscaling_config")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    prefill_chunk: int | None = Field(default=None, ge=0, description=(
        "prompt tokens prefilled per step while other streams decode; 0 = prefill whole; "
        "default: serving.engine.PREFILL_CHUNK for the device"))
    kv_cache_bytes: int | None = Field(default=None, ge=1, description=(
        "KV cache budget per replica in bytes; default: a share of the memory free after loading"))
    prefix_cache: bool = Field(default=True, description="reuse the KV of recent prompt prefixes")
    compile_decode: bool = Field(default=False, description=(
        "static-shape decode steps under torch.compile (CUDA graphs on a GPU); unmeasured on GPUs so far, "
        "slow to compile on CPUs, and not combined with adapters (docs/serving.md)"))
    stream_interval_ms: float = Field(default=20.0, ge=0, le=1000,
                                      description="hold streamed tokens up to this long to write fewer chunks")

    @model_validator(mode="after")
    def _check(self) -> "ServeArgs":
        if not self.preset and not self.model:
            raise ValueError("one of 'preset' or 'model' is required")
        names = [a.name for a in self.adapters]
        if len(set(names)) != len(names):
            raise ValueError(f"adapter names must be unique: {names}")
        if len(names) > self.max_adapters:
            raise ValueError(f"{len(names)} adapters exceed max_adapters ({self.max_adapters})")
        return self

    @classmethod
    def from_dict(cls, args: dict[str, Any] | None) -> "ServeArgs":
        """Validate an `args:` map; the error names the first bad field."""
        try:
            return cls.model_validate(args or {})
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "args"
            raise ServeArgsError(f"serving args: {loc}: {err['msg']}", param=loc) from e

    def restart_fields(self) -> dict[str, Any]:
        """The arguments a change of which needs new replicas (everything but LIVE_FIELDS), as JSON."""
        return self.model_dump(mode="json", exclude=set(LIVE_FIELDS), exclude_unset=True)
