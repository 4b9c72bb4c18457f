"""The package layering is checked by import-linter, and docs/architecture.md names every contract."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, configparser.SectionProxy]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".importlinter")
    return {s: cfg[s] for s in cfg.sections() if s.startswith("importlinter:contract:")}


def test_every_layering_contract_is_kept():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(no_cache=True, no_logo=True))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(_contracts())} kept, 0 broken" in proc.stdout


def test_a_broken_contract_is_reported(tmp_path):
    # The checker must be able to fail: a config that forbids hooks -> presets (which hooks does import).
    cfg = tmp_path / "broken.ini"
    cfg.write_text("[importlinter]\nroot_packages =\n    hooks\n    presets\n\n"
                   "[importlinter:contract:x]\nname = x\ntype = forbidden\n"
                   "source_modules =\n    hooks\nforbidden_modules =\n    presets\n")
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; from importlinter.cli import lint_imports; "
         f"sys.exit(lint_imports(config_filename={str(cfg)!r}, no_cache=True, no_logo=True))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "1 broken" in proc.stdout


def test_architecture_page_names_every_contract():
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = [c["name"] for c in _contracts().values() if c["name"] not in page]
    assert not missing, f"docs/architecture.md does not list: {missing}"
