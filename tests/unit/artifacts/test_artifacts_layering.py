import subprocess
import sys

import pytest

from tests.support import registry as support


def test_import_stays_light():
    """serving, tuning and init containers import this: no torch, and the hub client only for hf://."""
    code = "import sys, artifacts, artifacts.cli_pull; print(sorted(m for m in ('torch', 'transformers', 'huggingface_hub', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_missing_registry_binary_fails_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(support, "BINARY", str(tmp_path / "no-docker-registry"))
    with pytest.raises(support.RegistryUnavailable, match="apt-get install -y docker-registry"):
        with support.run_registry(tmp_path):
            pass
