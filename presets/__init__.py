"""The model catalog and the GPU instance-type table, as data with a typed loader.

Public surface: `get_preset`, `list_presets`, `get_sku`, `list_skus`, `chat_template`,
`default_training_config`, and the `Preset`/`Sku`/`TinySpec` models. Importing this package reads
no files; the YAML is parsed once, on first use.
"""
from __future__ import annotations

import functools
from importlib import resources

import yaml

from contract.tuningjob import METHODS as TUNING_METHODS  # the tuning Job interface names them
from presets.models import GIB, Preset, Sku, TinySpec

__all__ = [
    "GIB", "Preset", "Sku", "TinySpec", "PresetNotFound", "get_preset", "list_presets", "get_sku",
    "list_skus", "chat_template", "default_training_config", "TUNING_METHODS",
]


class PresetNotFound(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown preset {self.name!r}; accepted: {', '.join(p.name for p in list_presets())}"


def _read_yaml(*parts: str) -> dict:
    return yaml.safe_load(resources.files("presets").joinpath(*parts).read_text())


@functools.cache
def _catalog() -> dict[str, Preset]:
    data = _read_yaml("catalog.yaml")
    defaults = data.get("defaults", {})
    return {name: Preset(name=name, **{**defaults, **fields}) for name, fields in data["presets"].items()}


@functools.cache
def _skus() -> dict[str, Sku]:
    table = _read_yaml("skus.yaml")
    return {name: Sku(name=name, cloud=cloud, **fields) for cloud, rows in table.items() for name, fields in rows.items()}


def get_preset(name: str) -> Preset:
    try:
        return _catalog()[name]
    except KeyError:
        raise PresetNotFound(name) from None


def list_presets() -> list[Preset]:
    return list(_catalog().values())


def get_sku(instance_type: str) -> Sku | None:
    """The instance type's GPU shape, or None when it is not in the table."""
    return _skus().get(instance_type)


def list_skus() -> list[Sku]:
    return list(_skus().values())


@functools.cache
def chat_template(name: str) -> str:
    """Text of a named fallback chat template (used when a tokenizer ships none)."""
    return resources.files("presets").joinpath("templates", f"{name}.jinja").read_text()


def default_training_config(method: str) -> dict:
    """KAITO's default training_config.yaml content for 'lora' or 'qlora' (a fresh copy)."""
    method = method.lower()
    if method not in TUNING_METHODS:
        raise ValueError(f"unknown tuning method {method!r}; accepted: {', '.join(TUNING_METHODS)}")
    return _read_yaml("tuning_templates", f"{method}.yaml")
