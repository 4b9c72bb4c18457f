"""`kaito` itself: the version flags and a --help that lists every subcommand."""
import configparser
import importlib
import subprocess
import sys
from pathlib import Path

import kaito_cli

ROOT = Path(__file__).resolve().parents[3]


def kaito(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kaito_cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def setup_cfg_version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg["metadata"]["version"]


def test_version_and_V_print_the_package_version():
    for flag in ("--version", "-V"):
        r = kaito(flag)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"kaito {setup_cfg_version()}"


def test_help_lists_every_subcommand_on_one_line_each():
    r = kaito("--help")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    for name in kaito_cli.COMMANDS:
        mine = [ln for ln in lines if ln.split()[:1] == [name]]
        assert len(mine) == 1 and len(mine[0].split()) > 2, (name, r.stdout)


def test_every_listed_subcommand_has_a_main():
    for name, (module, _) in kaito_cli.COMMANDS.items():
        assert callable(getattr(importlib.import_module(module), "main", None)), name


def test_unknown_command_names_the_accepted_ones():
    r = kaito("serve")
    assert r.returncode == 2 and "'serve'" in r.stderr and "up" in r.stderr
