"""The torch side of live LoRA adapters: read and check an adapter's files, attach it to the running
model, detach it, and build KAITO's strength-combined adapter.

`read()` runs off the engine thread (disk and CPU only). `Slots` changes the model and only runs
between engine steps (`Engine.between_steps`): it wraps the base model in a peft `PeftModel` when
the first adapter arrives and unwraps it when the last one leaves, and keeps the runner's map from
a sequence's adapter (its served name) to the peft adapter key that serves it. Every load gets a
new key, never reused, so the prefix cache (keyed by peft key) never serves KV of an older version.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import BadRequest
from .facade import BASE

log = logging.getLogger(__name__)

_CONFIG = "adapter_config.json"
_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class AdapterError(BadRequest):
    """An adapter's files cannot serve this model; the message names the problem."""

    def __init__(self, message: str):
        super().__init__(message, param="lora_path")


@dataclass
class Weights:
    """An adapter read from disk and checked against the model: ready to attach."""
    config: object  # peft LoraConfig
    state: dict[str, torch.Tensor]  # peft's saved keys (base_model.model.<module>.lora_A.weight, ...)
    nbytes: int  # in the model's dtype, as it will sit beside the weights


def linear_shapes(model) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of every linear module of a transformers model, by module path."""
    shapes = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            shapes[name] = (m.in_features, m.out_features)
    return shapes


def read(path: Path, shapes: dict[str, tuple[int, int]], dtype: torch.dtype) -> Weights:
    """Read an adapter directory and check it fits the model whose linear modules are `shapes`."""
    from peft import LoraConfig, PeftConfig
    from peft.utils import load_peft_weights

    if not path.is_dir():
        raise AdapterError(f"adapter directory {path} does not exist")
    if not (path / _CONFIG).is_file():
        raise AdapterError(f"{path} is not a LoRA adapter: it holds no {_CONFIG}")
    if not any((path / w).is_file() for w in _WEIGHTS):
        raise AdapterError(f"{path} is not a LoRA adapter: it holds no {' or '.join(_WEIGHTS)}")
    try:
        kind = json.loads((path / _CONFIG).read_text()).get("peft_type")
        config = PeftConfig.from_pretrained(str(path))
        state = load_peft_weights(str(path), device="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise AdapterError(f"{path} is not a readable adapter: {e}") from e
    if not isinstance(config, LoraConfig):
        raise AdapterError(f"{path} is a {kind} adapter; only LoRA adapters are served")
    _check_fits(state, shapes, config)
    config.inference_mode = True
    return Weights(config, state, sum(t.numel() for t in state.values()) * dtype.itemsize)


def _check_fits(state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, int]], config) -> None:
    missing, wrong = set(), []
    for key, t in state.items():
        module, _, part = key.removeprefix("base_model.model.").rpartition(".lora_")
        if not module or part not in ("A.weight", "B.weight"):
            continue
        if module not in shapes:
            missing.add(module.rsplit(".", 1)[-1])
            continue
        fan_in, fan_out = shapes[module]
        got, want = (t.shape[1], fan_in) if part == "A.weight" else (t.shape[0], fan_out)
        if got != want:
            wrong.append(f"{module} ({'in' if part == 'A.weight' else 'out'} {want}, adapter {got})")
    if missing:
        raise AdapterError(f"the adapter's target modules {sorted(missing)} are not in this model "
                           f"(its modules include {sorted({n.rsplit('.', 1)[-1] for n in shapes})[:8]})")
    if wrong:
        raise AdapterError(f"the adapter was trained for another base architecture: {', '.join(wrong[:3])}")
    if not any(k.rpartition(".lora_")[2] == "A.weight" for k in state):
        raise AdapterError(f"the adapter holds no LoRA weights for target modules {config.target_modules}")


class Slots:
    """The adapters attached to the runner's model (engine thread only)."""

    def __init__(self, runner):
        self.runner = runner
        self.base = runner.model  # the plain transformers model
        self.keys: set[str] = set()
        self.routes: dict[str | None, str] = {None: BASE, BASE: BASE}  # Sequence.adapter -> peft key

    @property
    def peft(self):
        return self.runner.model if self.keys else None

    def attach(self, key: str, w: Weights) -> None:
        from peft import PeftModel
        from peft.utils import set_peft_model_state_dict

        if not self.keys:
            model = PeftModel(self.base, w.config, adapter_name=key)
        else:
            model = self.runner.model
            model.add_adapter(key, w.config)
        self.keys.add(key)
        try:
            result = set_peft_model_state_dict(model, w.state, adapter_name=key)
        except Exception:
            self._drop(model, key)
            raise
        if getattr(result, "unexpected_keys", None):
            log.warning("adapter %s: keys not loaded: %s", key, result.unexpected_keys[:5])
        model.eval()
        self.runner.model = model
        self._publish()

    def detach(self, key: str) -> None:
        if key in self.keys:
            self._drop(self.runner.model, key)
            self._publish()

    def _drop(self, model, key: str) -> None:
        self.keys.discard(key)
        if self.keys:
            with warnings.catch_warnings():  # "adapter X was active": we never use peft's active adapter
                warnings.filterwarnings("ignore", message="Adapter .* was active")
                model.delete_adapter(key)
        else:  # the last one: back to the plain model (peft keeps no adapter-less state)
            self.runner.model = self.base = model.unload()

    def combine(self, key: str, parts: list[tuple[str, float]]) -> None:
        """Add `key` as the weighted "cat" combination of attached adapters (exact: a strength of 0
        contributes nothing, so all-zero strengths give the base model)."""
        names, weights = [p for p, _ in parts], [s for _, s in parts]
        self.runner.model.add_weighted_adapter(names, weights, key, combination_type="cat")
        self.keys.add(key)
        self.runner.model.eval()

    def unroute(self, adapter: str | None, key: str) -> None:
        """Stop serving `adapter` from `key` (a newer version may already serve it from another key)."""
        if self.routes.get(adapter) == key:
            self.route(adapter, None)

    def route(self, adapter: str | None, key: str | None) -> None:
        """Serve `adapter` (a served name, or None for /chat's combination) from peft `key` (None: stop)."""
        if key is None:
            self.routes.pop(adapter, None)
            if adapter is None:
                self.routes[None] = BASE
        else:
            self.routes[adapter] = key
        self._publish()

    def _publish(self) -> None:
        # the runner passes peft adapter_names= only when the model is a PeftModel
        self.runner.adapter_names = dict(self.routes) if self.keys else None
