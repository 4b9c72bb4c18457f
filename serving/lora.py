"""The torch side of live LoRA adapters: read and check an adapter's files, and serve every attached
adapter in one batched forward (mixed-adapter batches, KAITO's strength combination).

`read()` runs off the engine thread (disk and CPU only): peft reads and validates the files, and each
target module's weights become one pair (A [r, in], B·scaling [out, r]) in the model's dtype.

`Slots` changes the model and only runs between engine steps (`Engine.between_steps`). For each
targeted nn.Linear it keeps every attached adapter side by side, A concatenated along the rank axis
([Σr, in]) and B·scaling likewise ([out, Σr]), behind a forward hook on that Linear. Per forward the
runner names each row's adapter (`Slots.rows`), and the hook adds ((x·Aᵀ) ⊙ C)·Bᵀ, where C [rows, Σr]
holds 1 on the rank columns of the row's adapter and 0 elsewhere: two matmuls per module, however many
adapters the batch mixes (peft's `adapter_names=` runs a row selection and two small matmuls per adapter
in every module instead; docs/serving.md). A row on the base gets exactly 0 added, and a forward with
only base rows skips the hooks' math. When a batch uses at most half of a module's rank columns, only
those columns take part, so many resident adapters cost what the batch uses.

Every load gets a new key, never reused, so the prefix cache (keyed by the key) never serves KV of an
older version. The runner's model stays the plain transformers model throughout.
"""
from __future__ import annotations

import itertools
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from contract.lora import SERVED_LORA, unserved

from .errors import BadRequest
from .facade import BASE

_CONFIG = "adapter_config.json"
_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_PREFIX = "base_model.model."  # peft's saved keys: base_model.model.<module>.lora_A.weight


class AdapterError(BadRequest):
    """An adapter's files cannot serve this model; the message names the problem."""

    def __init__(self, message: str):
        super().__init__(message, param="lora_path")


@dataclass
class Weights:
    """An adapter read from disk and checked against the model: ready to attach."""
    config: object  # peft LoraConfig (None for /chat's combination)
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]  # module path -> (A [r, in], B·scaling [out, r])
    nbytes: int  # in the model's dtype, as it will sit beside the weights

    @classmethod
    def of(cls, config, modules: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> "Weights":
        return cls(config, modules, sum(a.nbytes + b.nbytes for a, b in modules.values()))


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
    _check_exact(config)
    pairs = _pairs(state)
    _check_fits(pairs, shapes, config)
    modules = {m: (a.to(dtype), (b.float() * _scaling(config, m, a.shape[0])).to(dtype))
               for m, (a, b) in pairs.items()}
    return Weights.of(config, modules)


def _check_exact(config) -> None:
    found = unserved({f: getattr(config, f) for f in SERVED_LORA if hasattr(config, f)})
    if found is not None:
        field, value, served = found
        raise AdapterError(f"adapter_config.json sets {field}={value!r}, which the batched LoRA forward "
                           f"cannot compute; only {field}={served!r} is served")


def _pairs(state: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module: (lora_A, lora_B)} from peft's saved keys; any other weight is refused."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in state.items():
        module, _, part = key.removeprefix(_PREFIX).rpartition(".lora_")
        if not module or part not in ("A.weight", "B.weight") or t.dim() != 2:
            raise AdapterError(f"the adapter holds {key} {tuple(t.shape)}: only lora_A/lora_B weights of "
                               "Linear modules are served")
        parts.setdefault(module, {})[part[0]] = t
    for module, p in parts.items():
        if set(p) != {"A", "B"}:
            raise AdapterError(f"the adapter holds lora_{''.join(p)} but not lora_{'B' if 'A' in p else 'A'} "
                               f"for {module}")
    return {m: (p["A"], p["B"]) for m, p in parts.items()}


def _check_fits(pairs: dict, shapes: dict[str, tuple[int, int]], config) -> None:
    if not pairs:
        raise AdapterError(f"the adapter holds no LoRA weights for target modules {config.target_modules}")
    missing = sorted({m.rsplit(".", 1)[-1] for m in pairs if m not in shapes})
    if missing:
        raise AdapterError(f"the adapter's target modules {missing} are not in this model "
                           f"(its modules include {sorted({n.rsplit('.', 1)[-1] for n in shapes})[:8]})")
    wrong = []
    for module, (a, b) in pairs.items():
        fan_in, fan_out = shapes[module]
        if a.shape[1] != fan_in:
            wrong.append(f"{module} (in {fan_in}, adapter {a.shape[1]})")
        elif b.shape[0] != fan_out:
            wrong.append(f"{module} (out {fan_out}, adapter {b.shape[0]})")
        elif a.shape[0] != b.shape[1]:
            wrong.append(f"{module} (lora_A rank {a.shape[0]}, lora_B rank {b.shape[1]})")
    if wrong:
        raise AdapterError(f"the adapter was trained for another base architecture: {', '.join(wrong[:3])}")


def _scaling(config, module: str, rank: int) -> float:
    """peft's LoRA scaling of `module`: lora_alpha (or its alpha_pattern entry) / r, or / sqrt(r) with rsLoRA."""
    from peft.utils.other import get_pattern_key

    pattern = config.alpha_pattern or {}
    alpha = pattern.get(get_pattern_key(pattern.keys(), module), config.lora_alpha)
    return alpha / math.sqrt(rank) if config.use_rslora else alpha / rank


class Slots:
    """The adapters attached to the runner's model (engine thread only)."""

    def __init__(self, runner):
        self.runner = runner
        self.linears = {n: m for n, m in runner.model.named_modules() if isinstance(m, torch.nn.Linear)}
        self.device = next(runner.model.parameters()).device
        self.sites: dict[str, _Site] = {}
        self.ids: dict[str, int] = {}  # key -> the id its rank columns carry in every site
        self._ids = itertools.count()
        self.routes: dict[str | None, str] = {None: BASE, BASE: BASE}  # Sequence.adapter -> key
        self._rows: torch.Tensor | None = None  # this forward's adapter id per row (-1: base); None: all base
        self._used: frozenset[int] = frozenset()
        self._picks: dict[tuple, tuple] = {}  # layout -> (column index or None for all, C), this forward

    # -- attach / detach (between steps) ---------------------------------------------------------
    def attach(self, key: str, w: Weights) -> None:
        aid = self.ids[key] = next(self._ids)
        try:
            for module, (a, b) in w.modules.items():
                site = self.sites.get(module)
                if site is None:
                    site = self.sites[module] = _Site(self, self.linears[module])
                site.add(aid, a.to(self.device), b.to(self.device))
        except Exception:
            self.detach(key)
            raise
        self._publish()

    def detach(self, key: str) -> None:
        aid = self.ids.pop(key, None)
        if aid is None:
            return
        for module, site in list(self.sites.items()):
            site.remove(aid)
            if not site.layout:
                site.close()
                del self.sites[module]
        self._publish()

    def combine(self, key: str, parts: list[tuple[str, float]]) -> None:
        """Attach `key` as KAITO's strength combination of attached adapters: the parts' rank columns
        side by side, each B scaled by its strength (peft's add_weighted_adapter "cat", exactly: a
        strength of 0 contributes nothing, so all-zero strengths give the base model)."""
        modules = {}
        for module, site in self.sites.items():
            pieces = []
            for k, strength in parts:
                if (p := site.part(self.ids[k])) is not None:
                    pieces.append((p[0], p[1] * strength))
            if pieces:
                modules[module] = (torch.cat([a for a, _ in pieces]), torch.cat([b for _, b in pieces], dim=1))
        self.attach(key, Weights.of(None, modules))

    # -- routes ----------------------------------------------------------------------------------
    def unroute(self, adapter: str | None, key: str) -> None:
        """Stop serving `adapter` from `key` (a newer version may already serve it from another key)."""
        if self.routes.get(adapter) == key:
            self.route(adapter, None)

    def route(self, adapter: str | None, key: str | None) -> None:
        """Serve `adapter` (a served name, or None for /chat's combination) from `key` (None: stop)."""
        if key is None:
            self.routes.pop(adapter, None)
            if adapter is None:
                self.routes[None] = BASE
        else:
            self.routes[adapter] = key
        self._publish()

    def _publish(self) -> None:
        # the runner selects rows (Slots.rows) only while an adapter is attached
        self.runner.adapter_names = dict(self.routes) if self.ids else None
        self.runner.lora = self if self.ids else None

    # -- the forward (engine thread, inside the runner's forward) -------------------------------
    @contextmanager
    def rows(self, keys: list[str]):
        """Serve row i of the next forward from adapter `keys[i]` (BASE: no adapter)."""
        ids = [-1 if k == BASE else self.ids[k] for k in keys]
        used = frozenset(ids) - {-1}
        if used:
            self._rows, self._used = torch.tensor(ids, device=self.device), used
        try:
            yield
        finally:
            self._rows, self._used, self._picks = None, frozenset(), {}

    def _pick(self, site: "_Site"):
        """(column index or None for all columns, C [rows, columns]) of `site`'s layout for this
        forward, or None when no row uses an adapter of that site; shared by sites of equal layout."""
        layout = site.layout
        pick = self._picks.get(layout, False)
        if pick is False:
            used, width = [], 0
            for aid, r in layout:
                if aid in self._used:
                    used += range(width, width + r)
                width += r
            if not used:
                pick = None
            else:
                index = None if 2 * len(used) > width else torch.tensor(used, device=self.device)
                ids = site.cols if index is None else site.cols[index]
                pick = (index, (self._rows[:, None] == ids[None, :]).to(site.a.dtype))
            self._picks[layout] = pick
        return pick


class _Site:
    """One targeted nn.Linear: its adapters' A and B·scaling side by side, added by a forward hook."""

    def __init__(self, slots: Slots, linear: torch.nn.Linear):
        self.slots = slots
        self.layout: tuple[tuple[int, int], ...] = ()  # (adapter id, rank) in column order
        self.a = self.b = self.cols = None
        self.handle = linear.register_forward_hook(self._hook)

    def add(self, aid: int, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a = a if self.a is None else torch.cat([self.a, a])
        self.b = b if self.b is None else torch.cat([self.b, b], dim=1)
        self._set_layout(self.layout + ((aid, a.shape[0]),))

    def part(self, aid: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Views of one adapter's (A, B·scaling), or None when it does not target this module."""
        at = 0
        for i, r in self.layout:
            if i == aid:
                return self.a[at:at + r], self.b[:, at:at + r]
            at += r
        return None

    def remove(self, aid: int) -> None:
        if all(i != aid for i, _ in self.layout):
            return
        keep, at = [], 0
        for i, r in self.layout:
            if i != aid:
                keep.append(torch.arange(at, at + r, device=self.a.device))
            at += r
        layout = tuple((i, r) for i, r in self.layout if i != aid)
        if keep:
            index = torch.cat(keep)
            self.a, self.b = self.a.index_select(0, index), self.b.index_select(1, index)
        else:
            self.a = self.b = None
        self._set_layout(layout)

    def _set_layout(self, layout) -> None:
        self.layout = layout
        self.cols = torch.tensor([i for i, r in layout for _ in range(r)], device=self.slots.device)

    def close(self) -> None:
        self.handle.remove()

    def _hook(self, module, args, out):
        if self.slots._rows is None:
            return None  # every row on the base (or a forward outside the runner): the plain Linear
        pick = self.slots._pick(self)
        if pick is None:
            return None
        index, c = pick
        a, b = (self.a, self.b) if index is None else (self.a.index_select(0, index), self.b.index_select(1, index))
        h = F.linear(args[0], a)
        h = h * c.view(c.shape[0], *([1] * (h.dim() - 2)), c.shape[1])
        return out + F.linear(h, b)
