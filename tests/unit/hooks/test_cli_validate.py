"""`kaito validate` as a user runs it: a subprocess, its output and exit code."""
import subprocess
import sys

import pytest

from tests.unit.hooks.conftest import EXAMPLES, ROOT


def kaito(*args):
    return subprocess.run([sys.executable, "-m", "kaito_cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path):
    result = kaito("validate", "-f", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": valid")


def test_invalid_file_lists_every_error_and_exits_1(tmp_path):
    bad = tmp_path / "ws.yaml"
    bad.write_text((ROOT / "examples/inference/kaito_workspace_phi_3_with_adapters.yaml").read_text()
                   .replace("phi-3-mini-128k-instruct", "phi-9").replace('strength: "1.0"', 'strength: "7"'))
    result = kaito("validate", "-f", str(bad))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines == [
        f"{bad}: inference.adapters[0].strength: Strength value for Adapter must be between 0 and 1: '7'",
        f"{bad}: inference.preset.name: " + lines[1].split("inference.preset.name: ", 1)[1],
    ]
    assert "Unsupported inference preset name phi-9; accepted:" in lines[1]
    assert "Traceback" not in result.stderr


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("apiVersion: kaito.sh/v1alpha1\nkind: Workspace\nresource:\n  count: [1\n")
    result = kaito("validate", "-f", str(bad))
    assert result.returncode == 2
    assert "YAML syntax error at line" in result.stderr and "Traceback" not in result.stderr


def test_missing_file_is_a_clear_error(tmp_path):
    result = kaito("validate", "-f", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "No such file" in result.stderr and "Traceback" not in result.stderr


def test_update_rules_with_old(tmp_path):
    old = ROOT / "examples/inference/kaito_workspace_phi_3.yaml"
    new = tmp_path / "new.yaml"
    new.write_text(old.read_text().replace("phi-3-mini-4k-instruct", "phi-3-mini-128k-instruct").replace('"Standard_NC6s_v3"', '"Standard_NC12s_v3"'))
    result = kaito("validate", "-f", str(new), "--old", str(old))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{new}: inference.preset: field is immutable",
        f"{new}: resource.instanceType: field is immutable",
    ]
    assert kaito("validate", "-f", str(new)).returncode == 0


def test_validate_does_not_import_torch_or_ray():
    code = "import sys, kaito_cli; kaito_cli.main(['validate', '-f', 'examples/inference/kaito_workspace_phi_3.yaml']); print(sorted(m for m in ('torch', 'ray', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip().endswith("[]"), result.stdout + result.stderr


def test_unknown_command_lists_commands():
    result = kaito("frobnicate")
    assert result.returncode == 2 and "accepted: validate" in result.stderr
