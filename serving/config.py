"""The Serve application's arguments (what the Workspace ConfigMap holds), validated and resolved.

The model is the contract's (`contract.serveargs.ServeArgs`, which the hooks build the ConfigMap
from); `parse_args` is the only way in and turns its errors into a ConfigError naming the field.
`resolve()` fills what the preset implies (source, dtype, context, chat template) into `ResolvedArgs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract.serveargs import ServeArgs, ServeArgsError

from .errors import BadRequest
from .loading import AdapterSpec


class ConfigError(BadRequest):
    """Invalid application arguments (raised at deploy time, never per request)."""


def parse_args(args: dict[str, Any] | None) -> ServeArgs:
    """The `args:` map validated with the contract model; a bad field is a ConfigError naming it."""
    try:
        return ServeArgs.from_dict(args)
    except ServeArgsError as e:
        raise ConfigError(str(e), param=e.param) from e


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
        return [AdapterSpec(a.name, a.source, a.strength, a.docker_config) for a in self.args.adapters]


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
