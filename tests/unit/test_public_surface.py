"""Each package's public surface is its `__all__`: every public top-level name is listed, every listed
name exists, and nothing is listed twice (the httpx rule). A new public name is a deliberate change."""
from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = ["presets", "artifacts", "tuning", "serving"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name):
    pkg = importlib.import_module(name)
    exported = list(pkg.__all__)
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(pkg, n)]
    assert not missing, f"{name}.__all__ names what {name} does not define: {missing}"
    public = {n for n, v in vars(pkg).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"}
    assert public == set(exported), (
        f"{name}: public but not in __all__: {sorted(public - set(exported))}; "
        f"in __all__ but private: {sorted(set(exported) - public)}")
