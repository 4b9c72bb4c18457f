"""Each package's public surface is its `__all__`: every public top-level name is listed, every listed
name exists, and nothing is listed twice (the httpx rule). A new public name is a deliberate change.

Packages are checked name by name. For modules that form a package's surface (hooks, metacontroller
and contract expose modules, not names), the check covers what the module itself defines: every
public class and function whose home is that module is in `__all__`."""
from __future__ import annotations

import importlib
import inspect
import types

import pytest

PACKAGES = ["presets", "artifacts", "tuning", "serving", "hooks", "hooks.core", "hooks.shell", "hooks.tools",
            "metacontroller", "contract"]
MODULES = ["contract.workspace", "contract.serveargs", "contract.serveconfig", "contract.argv", "contract.tuningjob",
           "contract.paths", "contract.ports", "contract.urlpolicy", "contract.podstatus", "contract.lora", "presets.facts", "hooks.core.errors",
           "hooks.core.api", "hooks.core.protocol", "metacontroller.api", "metacontroller.apply"]


def _listed(mod) -> list[str]:
    exported = list(mod.__all__)
    assert len(exported) == len(set(exported)), f"{mod.__name__}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(mod, n)]
    assert not missing, f"{mod.__name__}.__all__ names what {mod.__name__} does not define: {missing}"
    return exported


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name):
    pkg = importlib.import_module(name)
    exported = _listed(pkg)
    public = {n for n, v in vars(pkg).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"}
    assert public == set(exported), (
        f"{name}: public but not in __all__: {sorted(public - set(exported))}; "
        f"in __all__ but private: {sorted(set(exported) - public)}")


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_every_class_and_function_the_module_defines(name):
    mod = importlib.import_module(name)
    exported = _listed(mod)
    defined = {n for n, v in vars(mod).items() if not n.startswith("_")
               and (inspect.isclass(v) or inspect.isfunction(v)) and getattr(v, "__module__", None) == name}
    assert defined <= set(exported), f"{name}: defined here but not in __all__: {sorted(defined - set(exported))}"
