"""Each fact of the hooks<->runtime contract is defined in exactly one module (issue 13: no second copies)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("hooks", "serving", "tuning", "artifacts", "contract", "presets", "metacontroller", "kaito_cli", "tinymodel")
FACTS = {
    r"^DEFAULT_INSTANCE_TYPE\s*=": "contract/workspace.py",
    r"\"kaito\.sh/adapter-refresh\"": "contract/workspace.py",
    r"\"kaito\.sh/enablelb\"": "contract/workspace.py",
    r"^def claim_name\(": "contract/workspace.py",
    r"\"serve_config\.yaml\"": "contract/serveconfig.py",
    r"\"training_config\.yaml\"": "contract/tuningjob.py",
    r"\"KAITO_CACHE_DIR\"": "contract/paths.py",
    r"\"KAITO_ADAPTER_API_TOKEN\"": "contract/serveargs.py",
    r"^class (ServeArgs|AdapterArg)\b": "contract/serveargs.py",
    r"^(UNKNOWN_SKU_GPUS|DEFAULT_DISK_GIB|DEFAULT_READINESS_TIMEOUT_SECONDS)\s*=": "presets/facts.py",
    r"^def (parse_strength|adapter_strength)\(": "presets/facts.py",
    r"\"metacontroller\.k8s\.io/last-applied-configuration\"": "metacontroller/apply.py",
}


@pytest.mark.parametrize("pattern", FACTS)
def test_the_fact_has_one_home(pattern):
    rx = re.compile(pattern, re.M)
    holders = sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                     if rx.search(p.read_text()))
    assert holders == [FACTS[pattern]]
