"""The Serve application's arguments (what the Workspace ConfigMap holds), validated.

`ServeArgs.from_dict` is the only way in; unknown keys are refused with the field named.
`resolve()` fills what the preset implies (source, dtype, context, chat template) into `ResolvedArgs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import BadRequest
from .loading import AdapterSpec


class ConfigError(BadRequest):
    """Invalid application arguments (raised at deploy time, never per request)."""


class AdapterArg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="model name clients use")
    path: str = Field(min_length=1, description="local directory holding adapter_config.json")
    strength: float = Field(default=1.0, ge=0.0, le=1.0, description="weight in the /chat combination")


class ServeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    preset: str | None = Field(default=None, description="preset name from the catalog")
    model: str | None = Field(default=None, description="local dir, oci:// or hf:// source; default: preset's")
    served_model_name: str | None = Field(default=None, description="name in /v1/models; default: preset name")
    adapters: list[AdapterArg] = Field(default_factory=list, max_length=10)
    num_replicas: int = Field(default=1, ge=1, description="one replica per GPU node")
    gpus_per_replica: float = Field(default=0, ge=0)
    cpus_per_replica: float = Field(default=1, gt=0)
    trust_remote_code: bool = False
    dtype: Literal["float32", "float16", "bfloat16"] | None = None
    max_batch_size: int = Field(default=32, ge=1, description="running sequences per replica")
    max_queue: int = Field(default=128, ge=0, description="waiting sequences per replica before 429")
    max_model_len: int | None = Field(default=None, ge=16)
    num_threads: int | None = Field(default=None, ge=1, description="torch threads per replica; default: this machine's cores / num_replicas")
    autoscaling: dict[str, Any] | None = Field(default=None, description="Ray Serve autoscaling_config")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    prefill_chunk: int | None = Field(default=None, ge=0, description=(
        "prompt tokens prefilled per step while other streams decode; 0 = prefill whole; "
        "default: serving.engine.PREFILL_CHUNK for the device"))
    kv_cache_bytes: int | None = Field(default=None, ge=1, description=(
        "KV cache budget per replica in bytes; default: a share of the memory free after loading"))
    prefix_cache: bool = Field(default=True, description="reuse the KV of recent prompt prefixes")
    stream_interval_ms: float = Field(default=20.0, ge=0, le=1000,
                                      description="hold streamed tokens up to this long to write fewer chunks")

    @model_validator(mode="after")
    def _check(self) -> "ServeArgs":
        if not self.preset and not self.model:
            raise ValueError("one of 'preset' or 'model' is required")
        names = [a.name for a in self.adapters]
        if len(set(names)) != len(names):
            raise ValueError(f"adapter names must be unique: {names}")
        return self

    @classmethod
    def from_dict(cls, args: dict[str, Any] | None) -> "ServeArgs":
        try:
            return cls.model_validate(args or {})
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "args"
            raise ConfigError(f"serving args: {loc}: {err['msg']}", param=loc) from e


@dataclass(frozen=True)
class ResolvedArgs:
    args: ServeArgs
    source: str | None  # None = build the tiny preset locally
    served_model_name: str
    dtype: str
    context_length: int | None
    chat_template: str | None
    trust_remote_code: bool
    device: str

    @property
    def adapters(self) -> list[AdapterSpec]:
        return [AdapterSpec(a.name, a.path, a.strength) for a in self.args.adapters]


def resolve(args: ServeArgs, *, cuda_available: bool = False) -> ResolvedArgs:
    preset = None
    if args.preset:
        import presets

        try:
            preset = presets.get_preset(args.preset)
        except KeyError as e:
            raise ConfigError(str(e), param="preset") from e
    device = args.device if args.device != "auto" else ("cuda" if cuda_available and args.gpus_per_replica else "cpu")
    dtype = args.dtype or (preset.dtype if preset else "float32")
    if device == "cpu" and dtype == "float16":
        dtype = "float32"  # fp16 matmuls are slow or missing on CPUs
    template = None
    if preset and preset.chat_template:
        import presets

        template = presets.chat_template(preset.chat_template)
    source = args.model or (preset.source if preset else None)
    name = args.served_model_name or (preset.name if preset else _name_from(source))
    return ResolvedArgs(args=args, source=source, served_model_name=name, dtype=dtype,
                        context_length=args.max_model_len or (preset.context_length if preset else None),
                        chat_template=template,
                        trust_remote_code=args.trust_remote_code or bool(preset and preset.trust_remote_code),
                        device=device)


def _name_from(source: str | None) -> str:
    tail = (source or "model").rstrip("/").rsplit("/", 1)[-1]
    return tail.split("@", 1)[0].split(":", 1)[0] or "model"
