"""The ports are facts of contract/ports.py alone: hooks emit them and the runtime listens on them."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_no_other_module_defines_a_port_constant():
    pattern = re.compile(r"^\s*(SERVE_PORT|SERVICE_PORT|RAY_PORT)\s*=", re.M)
    holders = sorted(str(p.relative_to(ROOT)) for pkg in ("hooks", "serving", "tuning", "artifacts", "contract")
                     for p in (ROOT / pkg).rglob("*.py") if pattern.search(p.read_text()))
    assert holders == ["contract/ports.py"]

