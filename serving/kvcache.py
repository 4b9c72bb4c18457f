"""A KV cache layer that grows by doubling instead of re-concatenating the whole cache every step.

transformers' DynamicLayer appends with torch.cat, which copies every cached key and value on each
decode step: O(batch x length) bytes per token, which dominates at large batches. This layer keeps
spare capacity along the sequence axis and writes new keys in place; `keys`/`values` are views of
the filled part, so the runner's join/leave code (which assigns whole tensors) keeps working.
`limit` (set by the runner: the longest row's prompt + max_tokens) caps the spare capacity, so the
cache never outgrows what the engine's KV budget reserved for it.

Static decode (the runner's `compile_decode`): `write_at`, a one-element position tensor set by the
runner for one step, makes `update` write there with `index_copy_` and return the whole buffers, so
a decode step has the same shapes (batch x capacity) step after step and a compiled graph (CUDA
graphs under torch.compile's reduce-overhead) is reused until a join, a leave or a growth. Spare
capacity is then zeroed: the runner's mask hides it, but masked garbage could be NaN, and a zero
attention weight times NaN is NaN.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowableLayer(DynamicLayer):
    zero_spare = False  # static decode: spare capacity is attended over (masked), so zeros

    def __init__(self, **kwargs):
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._len = 0
        self.limit: int | None = None
        self.write_at: torch.Tensor | None = None  # static decode: the column this step writes
        super().__init__(**kwargs)

    # keys/values: views of the filled part; assigning replaces the buffers (capacity = content)
    @property
    def keys(self):
        return None if self._k is None else self._k[:, :, :self._len]

    @keys.setter
    def keys(self, t):
        self._k = t
        self._len = 0 if t is None or t.dim() < 3 else t.shape[-2]

    @property
    def values(self):
        return None if self._v is None else self._v[:, :, :self._len]

    @values.setter
    def values(self, t):
        self._v = t

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if self.write_at is not None:  # no Python ints read here: a compiled step must not specialize on them
            self._k.index_copy_(2, self.write_at, key_states)
            self._v.index_copy_(2, self.write_at, value_states)
            return self._k, self._v
        if not self.is_initialized or self._k is None or self._k.dim() < 4:
            self.lazy_initialization(key_states, value_states)
            self._k, self._v, self._len = key_states, value_states, key_states.shape[-2]
            self.is_initialized = True
            return self.keys, self.values
        n = key_states.shape[-2]
        self.reserve(n)
        self._k[:, :, self._len:self._len + n] = key_states
        self._v[:, :, self._len:self._len + n] = value_states
        self._len += n
        return self.keys, self.values

    def reserve(self, n: int) -> None:
        """Make room for n more positions (doubling, capped at `limit`)."""
        if self._len + n > self._k.shape[-2]:
            cap = max(2 * (self._len + n), 64)
            if self.limit is not None:
                cap = max(self._len + n, min(cap, self.limit))
            self._k = _with_capacity(self._k, self._len, cap, self.zero_spare)
            self._v = _with_capacity(self._v, self._len, cap, self.zero_spare)

    @property
    def capacity(self) -> int:
        return self._k.shape[-2]

    def filled(self, length: int) -> None:
        """Static decode: the step wrote through `write_at`; the first `length` positions are filled."""
        self._len = length

    def set_buffers(self, k: torch.Tensor, v: torch.Tensor, length: int) -> None:
        """Adopt buffers whose first `length` positions are filled (the rest is spare capacity)."""
        self._k, self._v, self._len = k, v, length
        self.is_initialized = True

    def get_seq_length(self) -> int:
        return self._len if self.is_initialized else 0

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self._k, self._v) if t is not None)


def _with_capacity(t: torch.Tensor, filled: int, cap: int, zero_spare: bool = False) -> torch.Tensor:
    shape = list(t.shape)
    shape[-2] = cap
    out = t.new_empty(shape)
    out[:, :, :filled] = t[:, :, :filled]
    if zero_spare:
        out[:, :, filled:].zero_()
    return out


def stack_right_aligned(parts: list[torch.Tensor], width: int, cap: int, zero_spare: bool = False) -> torch.Tensor:
    """Rows of every part ([B, H, T, D]) in one [sum B, H, cap, D] buffer, each part's T positions
    ending at column `width`, zeros to their left: one copy, where left-padding each part and then
    concatenating would copy everything twice and the next append a third time."""
    b = sum(p.shape[0] for p in parts)
    first = parts[0]
    out = first.new_empty((b, first.shape[1], cap, first.shape[3]))
    row = 0
    for p in parts:
        n, t = p.shape[0], p.shape[2]
        out[row:row + n, :, :width - t].zero_()
        out[row:row + n, :, width - t:width] = p
        row += n
    if zero_spare:
        out[:, :, width:].zero_()
    return out


class StaticDecodeLayer(GrowableLayer):
    zero_spare = True


def growable_cache(static_decode: bool = False) -> DynamicCache:
    cache = DynamicCache()
    cache.layer_class_to_replicate = StaticDecodeLayer if static_decode else GrowableLayer
    return cache
