"""Workspace validation: KAITO's webhook rules, accumulated, each error naming its field path.

`validate_workspace` is what `kaito validate` prints and what the sync hook turns into a False
condition. It applies, in order: the API models (types, unknown fields), the rules of
`hooks.core.rules` (the same ones the CRD enforces with CEL), then what needs the catalog (unknown
preset, GPU fit against the SKU table, tunable presets, gated weights).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pydantic

import presets
from contract.urlpolicy import is_http_url, is_internal_url
from hooks.core import rules
from contract.workspace import DEFAULT_INSTANCE_TYPE, MAX_WORKSPACE_ADAPTERS, ResourceSpec, Workspace
from hooks.core.children.names import adapter_key
from hooks.core.errors import WorkspaceInvalid
from presets.facts import WorkspaceFacts, workspace_facts



@dataclass(frozen=True, order=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _loc_to_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _model_errors(exc: pydantic.ValidationError, model: type[pydantic.BaseModel]) -> list[FieldError]:
    errors = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        if err["type"] == "extra_forbidden":
            parent = _fields_at(model, loc[:-1])
            accepted = f"; accepted: {', '.join(parent)}" if parent else ""
            errors.append(FieldError(_loc_to_path(loc), f"unknown field{accepted}"))
        elif err["type"] == "literal_error":
            errors.append(FieldError(_loc_to_path(loc), f"invalid value {err['input']!r}: {err['msg'].removeprefix('Input should be ')}"))
        else:
            errors.append(FieldError(_loc_to_path(loc), err["msg"]))
    return errors


def _fields_at(model: type[pydantic.BaseModel], loc: tuple) -> list[str]:
    """Accepted field names (wire spelling) of the model found by walking `loc`."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields:
            return []
        match = next((f for name, f in fields.items() if (f.alias or name) == part), None)
        if match is None:
            return []
        current = _model_in(match.annotation)
    fields = getattr(current, "model_fields", None) or {}
    return [f.alias or name for name, f in fields.items()]


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _fail(errors: list[FieldError], path: str, rule_id: str, detail: str = "") -> None:
    errors.append(FieldError(path, rules.message(rule_id) + (f": {detail}" if detail else "")))


def _has(obj: dict | None, key: str) -> bool:
    return isinstance(obj, dict) and obj.get(key) is not None


def _check_rules(ws: dict, errors: list[FieldError]) -> None:
    """Python twins of hooks.core.rules (create rules); raw dicts, so 'has' means what CEL means."""
    name = (ws.get("metadata") or {}).get("name") or ""
    if len(name) > 63 or not re.match(rules.DNS_LABEL, name):
        _fail(errors, "metadata.name", "name-dns-label", repr(name))
    inference, tuning = ws.get("inference"), ws.get("tuning")
    if inference is None and tuning is None:
        _fail(errors, "", "inference-or-tuning")
    if inference is not None and tuning is not None:
        _fail(errors, "", "inference-xor-tuning")
    selector = (ws.get("resource") or {}).get("labelSelector") or {}
    if any(e.get("operator") != "In" for e in selector.get("matchExpressions") or []):
        _fail(errors, "resource.labelSelector.matchExpressions", "label-selector-in-only")
    count = (ws.get("resource") or {}).get("count", 1)
    if tuning is not None and count > 1:
        _fail(errors, "resource.count", "tuning-single-node")
    if inference is not None:
        _check_inference(inference, errors)
    if tuning is not None:
        _check_tuning(tuning, errors)


def _check_inference(inference: dict, errors: list[FieldError]) -> None:
    if not _has(inference, "preset") and not _has(inference, "template"):
        _fail(errors, "inference", "preset-or-template")
    if _has(inference, "preset") and _has(inference, "template"):
        _fail(errors, "inference", "preset-xor-template")
    preset = inference.get("preset") or {}
    if preset.get("accessMode") == "private" and not _has(preset.get("presetOptions"), "image"):
        _fail(errors, "inference.preset.presetOptions.image", "private-needs-image")
    if preset.get("accessMode") == "private":
        _check_image((preset.get("presetOptions") or {}).get("image"), "inference.preset.presetOptions.image",
                     "preset-image", errors)
    adapters = inference.get("adapters") or []
    if len(adapters) > MAX_WORKSPACE_ADAPTERS:
        _fail(errors, "inference.adapters", "adapters-max", f"got {len(adapters)}")
    seen: set[str] = set()
    for i, adapter in enumerate(adapters):
        path = f"inference.adapters[{i}]"
        source = adapter.get("source") or {}
        name = source.get("name")
        if not name:
            _fail(errors, f"{path}.source.name", "adapter-name-required")
        elif len(name) > rules.ADAPTER_NAME_MAX or not re.match(rules.ADAPTER_NAME, name):
            _fail(errors, f"{path}.source.name", "adapter-name-valid", _shorten(name))
        elif name in seen:
            _fail(errors, f"{path}.source.name", "adapters-unique", name)
        if name:
            seen.add(name)
        if not _has(source, "image") and not _has(source, "volumeSource"):
            _fail(errors, f"{path}.source", "adapter-image-or-volume")
        _check_image(source.get("image"), f"{path}.source.image", "adapter-image", errors)
        if _has(source, "urls"):
            _fail(errors, f"{path}.source.urls", "adapter-no-urls")
        strength = adapter.get("strength")
        if strength is not None:
            which = f"{strength!r} (adapter {name!r})"
            if not re.match(rules.STRENGTH_NUMBER, strength):
                _fail(errors, f"{path}.strength", "strength-number", which)
            elif not Decimal(0) <= Decimal(strength) <= Decimal(1):
                _fail(errors, f"{path}.strength", "strength-range", which)


def _shorten(value: str, limit: int = 80) -> str:
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def _check_image(image: Any, path: str, stem: str, errors: list[FieldError]) -> None:
    """The twin of the `<stem>-format` and `<stem>-lowercase` rules (hooks.core.rules.IMAGE_FIELDS)."""
    if not isinstance(image, str):
        return
    if not re.match(rules.IMAGE_REF, image):
        _fail(errors, path, f"{stem}-format", _shorten(image) + _image_problem(image))
    if re.match(rules.IMAGE_UPPER_REPOSITORY, image):
        _fail(errors, path, f"{stem}-lowercase", _shorten(image))


def _image_problem(image: str) -> str:
    """The most likely reason a reference does not parse, for the Python message (CEL gives none)."""
    name = image.split("@", 1)[0]
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first) and not re.match(rules.IMAGE_HOST, first):
        return f"; the registry host {first!r} is not a host name (letters, digits, '-', '.', an optional :port)"
    if ":" not in (rest or first).rsplit("/", 1)[-1] and "@" not in image:
        return "; it has no tag or digest"
    return ""


def _check_tuning(tuning: dict, errors: list[FieldError]) -> None:
    method = tuning.get("method", "lora")
    if not re.match(r"^(?i:lora|qlora)$", method):
        _fail(errors, "tuning.method", "method-lora-qlora", repr(method))
    source = tuning.get("input") or {}
    _check_image(source.get("image"), "tuning.input.image", "input-image", errors)
    if sum(_has(source, k) for k in ("urls", "volumeSource", "image")) != 1:
        _fail(errors, "tuning.input", "input-exactly-one")
    for i, url in enumerate(source.get("urls") or []):
        if not is_http_url(url):
            _fail(errors, f"tuning.input.urls[{i}]", "input-urls-http", repr(url))
        elif is_internal_url(url):
            _fail(errors, f"tuning.input.urls[{i}]", "input-urls-external", repr(url))
    output = tuning.get("output") or {}
    _check_image(output.get("image"), "tuning.output.image", "output-image", errors)
    if _has(output, "image") and not _has(output, "imagePushSecret"):
        _fail(errors, "tuning.output.imagePushSecret", "output-push-secret")
    if _has(output, "image") == _has(output, "volumeSource"):
        _fail(errors, "tuning.output", "output-exactly-one")


def _check_update(new: dict, old: dict, errors: list[FieldError]) -> None:
    """Python twins of the transition rules of hooks.core.rules."""
    for section, rule_id in (("inference", "inference-toggle"), ("tuning", "tuning-toggle")):
        if (new.get(section) is None) != (old.get(section) is None):
            _fail(errors, section, rule_id)
    new_res, old_res = new.get("resource") or {}, old.get("resource") or {}
    defaults = {"count": ResourceSpec.model_fields["count"].default, "instanceType": DEFAULT_INSTANCE_TYPE}
    for key, rule_id in (("count", "count-immutable"), ("instanceType", "instance-type-immutable"), ("labelSelector", "label-selector-immutable")):
        if new_res.get(key, defaults.get(key)) != old_res.get(key, defaults.get(key)):
            _fail(errors, f"resource.{key}", rule_id)
    new_inf, old_inf = new.get("inference"), old.get("inference")
    if new_inf is not None and old_inf is not None:
        if _has(new_inf, "template") != _has(old_inf, "template"):
            _fail(errors, "inference.template", "template-set-unset")
        if _has(new_inf, "preset") and _has(old_inf, "preset") and _normal_preset(new_inf["preset"]) != _normal_preset(old_inf["preset"]):
            _fail(errors, "inference.preset", "inference-preset-immutable")
    new_tun, old_tun = new.get("tuning"), old.get("tuning")
    if new_tun is not None and old_tun is not None:
        if _normal_preset(new_tun.get("preset") or {}) != _normal_preset(old_tun.get("preset") or {}):
            _fail(errors, "tuning.preset", "tuning-preset-immutable")
        if str(new_tun.get("method", "lora")).lower() != str(old_tun.get("method", "lora")).lower():
            _fail(errors, "tuning.method", "method-immutable")
        if (new_tun.get("input") or {}).get("name") != (old_tun.get("input") or {}).get("name"):
            _fail(errors, "tuning.input.name", "input-name-immutable")


def _normal_preset(preset: dict) -> dict:
    return {"accessMode": "public", **preset}


def check_catalog(ws: Workspace) -> list[FieldError]:
    """What admission cannot know: the preset exists, fits the instance type, can be tuned; and the
    Kubernetes names derived from adapter names stay distinct."""
    errors: list[FieldError] = []
    resource = ws.resource
    if ws.inference is not None:
        if ws.inference.preset is not None:
            errors += _check_preset(ws.inference.preset, "inference.preset.name", "inference", resource)
        else:
            errors += instance_type_known(resource.instance_type)
        errors += _check_adapter_keys(ws.inference.adapters or [])
    if ws.tuning is not None:
        errors += _check_preset(ws.tuning.preset, "tuning.preset.name", "tuning", resource)
    return errors


def _check_adapter_keys(adapters) -> list[FieldError]:
    """Two adapters whose derived key (container, volume and directory name) is the same would
    collide in the pod; only a name built to equal another's hashed key can do that."""
    owner: dict[str, str] = {}
    errors = []
    for i, adapter in enumerate(adapters):
        name = adapter.source.name
        if not name:
            continue
        key = adapter_key(name)
        if key in owner and owner[key] != name:
            errors.append(FieldError(f"inference.adapters[{i}].source.name", (
                f"adapter names {owner[key]!r} and {name!r} map to the same Kubernetes name {key!r}; rename one")))
        owner.setdefault(key, name)
    return errors


def _check_preset(spec, path: str, purpose: str, resource) -> list[FieldError]:
    try:
        preset = presets.get_preset(spec.name)
    except presets.PresetNotFound as exc:
        accepted = [p.name for p in presets.list_presets() if purpose == "inference" or p.tunable]
        return [FieldError(path, f"Unsupported {purpose} preset name {exc.name}; accepted: {', '.join(accepted)}")]
    errors: list[FieldError] = []
    if purpose == "tuning" and not preset.tunable:
        tunable = [p.name for p in presets.list_presets() if p.tunable]
        errors.append(FieldError(path, f"Unsupported tuning preset name {preset.name}; accepted: {', '.join(tunable)}"))
    if purpose == "inference" and preset.access_mode == "private" and spec.access_mode != "private":
        errors.append(FieldError("inference.preset.accessMode", (
            f"This preset only supports private AccessMode, AccessMode must be private to continue "
            f"(preset {preset.name} is served from the image in presetOptions.image)")))
    options = spec.preset_options
    if purpose == "inference" and preset.gated and spec.access_mode == "public" and not (options and options.model_access_secret):
        errors.append(FieldError(
            "inference.preset.presetOptions.modelAccessSecret",
            "This preset requires authentication and needs a modelAccessSecret with HF_TOKEN key under presetOptions to download the model",
        ))
    if purpose == "inference":
        errors += gpu_fit(preset, resource.instance_type, resource.count)
    return errors


def _gib(value: float) -> str:
    return f"{value:g}Gi"


# KAITO lets unknown Azure N-/D-series through without a GPU-fit check (new SKUs appear faster
# than tables); anything else outside the table is refused.
UNLISTED_SKU_PREFIXES = ("Standard_N", "Standard_D")


def instance_type_known(instance_type: str) -> list[FieldError]:
    if presets.get_sku(instance_type) is not None or instance_type.startswith(UNLISTED_SKU_PREFIXES):
        return []
    known = ", ".join(s.name for s in presets.list_skus())
    return [FieldError("resource.instanceType", f"Unsupported instance type {instance_type}. Supported SKUs: {known}")]


def gpu_fit(preset: presets.Preset, instance_type: str, count: int) -> list[FieldError]:
    """KAITO's GPU checks: enough GPUs, per-GPU memory and total memory on `count` nodes."""
    sku = presets.get_sku(instance_type)
    path = "resource.instanceType"
    if sku is None:
        return instance_type_known(instance_type)
    errors = []
    if count * sku.gpus < preset.gpu_count:
        errors.append(FieldError(path, (
            f"Insufficient number of GPUs: Instance type {instance_type} provides {count * sku.gpus} "
            f"(count {count} x {sku.gpus}), but preset {preset.name} requires at least {preset.gpu_count}")))
    if preset.per_gpu_memory_gib and sku.memory_per_gpu_gib < preset.per_gpu_memory_gib:
        errors.append(FieldError(path, (
            f"Insufficient per GPU memory: Instance type {instance_type} provides {_gib(sku.memory_per_gpu_gib)} per GPU, "
            f"but preset {preset.name} requires at least {_gib(preset.per_gpu_memory_gib)} per GPU")))
    if count * sku.memory_gib < preset.total_gpu_memory_gib:
        errors.append(FieldError(path, (
            f"Insufficient total GPU memory: Instance type {instance_type} has a total of {_gib(count * sku.memory_gib)} "
            f"(count {count} x {_gib(sku.memory_gib)}), but preset {preset.name} requires at least {_gib(preset.total_gpu_memory_gib)}")))
    return errors


def workspace_warnings(obj: Any) -> list[FieldError]:
    """What a valid Workspace may still surprise its author with: an instance type KAITO takes
    without a GPU-fit check, and the default instance type applied to an omitted field."""
    if not isinstance(obj, dict) or not isinstance(obj.get("resource"), dict):
        return []
    resource = obj["resource"]
    path = "resource.instanceType"
    default = DEFAULT_INSTANCE_TYPE
    if resource.get("instanceType") is None:
        return [FieldError(path, (
            f"instanceType is not set; the default {default} applies (KAITO v0.3 defaulted to Standard_NC12s_v3)"))]
    instance_type = resource["instanceType"]
    if isinstance(instance_type, str) and presets.get_sku(instance_type) is None \
            and instance_type.startswith(UNLISTED_SKU_PREFIXES):
        return [FieldError(path, (
            f"instance type {instance_type} is not in the SKU table: accepted as KAITO does for "
            f"{' and '.join(p + '*' for p in UNLISTED_SKU_PREFIXES)} names, without a GPU-fit check "
            f"(the node gets the preset's GPU count)"))]
    return []


@dataclass(frozen=True)
class Validated:
    """One parse of a Workspace: the model (None when it does not parse) and every error, sorted.

    `facts` are the derived facts (presets.facts) of a valid Workspace, None for an invalid one."""
    workspace: Workspace | None
    errors: list[FieldError]

    @property
    def valid(self) -> bool:
        return self.workspace is not None and not self.errors

    @functools.cached_property
    def facts(self) -> WorkspaceFacts | None:
        return workspace_facts(self.workspace) if self.valid else None


def validate_workspace(obj: Any, old: Any = None) -> Validated:
    """Parse `obj` once and collect every error in it (and, with `old`, in the update from `old`)."""
    if not isinstance(obj, dict):
        return Validated(None, [FieldError("", f"a Workspace must be a mapping, got {type(obj).__name__}")])
    errors: list[FieldError] = []
    if obj.get("kind", "Workspace") != "Workspace" or obj.get("apiVersion", "kaito.sh/v1alpha1") != "kaito.sh/v1alpha1":
        return Validated(None, [FieldError("kind", f"expected apiVersion kaito.sh/v1alpha1, kind Workspace; got {obj.get('apiVersion')}, {obj.get('kind')}")])
    try:
        ws = Workspace.model_validate(obj)
    except pydantic.ValidationError as exc:
        errors += _model_errors(exc, Workspace)
        ws = None
    if ws is not None:
        _check_rules(obj, errors)
        if old is not None and isinstance(old, dict):
            _check_update(obj, old, errors)
        errors += check_catalog(ws)
    return Validated(ws, sorted(set(errors)))


def parse_workspace(obj: Any) -> Workspace:
    checked = validate_workspace(obj)
    if checked.errors:
        raise WorkspaceInvalid(checked.errors)
    return checked.workspace
