"""`kaito validate` as a user runs it: a subprocess, its output and exit code."""
import subprocess
import sys

import pytest

from tests.unit.hooks.conftest import EXAMPLES, PLACEHOLDERS, ROOT


def kaito(*args):
    return subprocess.run([sys.executable, "-m", "kaito_cli", *args], capture_output=True, text=True, cwd=ROOT)


def _filled(text: str) -> str:
    for placeholder, real in PLACEHOLDERS.items():
        text = text.replace(placeholder, real)
    return text


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path, tmp_path):
    """Every example is valid as a user applies it; the seeds' placeholders are refused by field."""
    text = path.read_text()
    if _filled(text) != text:
        result = kaito("validate", "-f", str(path))
        assert result.returncode == 1 and "Repository name must be lowercase" in result.stdout
        path = tmp_path / path.name
        path.write_text(_filled(text))
    result = kaito("validate", "-f", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": valid")


def test_warns_about_a_defaulted_or_unlisted_instance_type_and_still_exits_0(tmp_path):
    text = (ROOT / "examples/inference/kaito_workspace_phi_3.yaml").read_text()
    unlisted, defaulted = tmp_path / "unlisted.yaml", tmp_path / "defaulted.yaml"
    unlisted.write_text(text.replace('"Standard_NC6s_v3"', '"Standard_NC4ads_H100_v9"'))
    defaulted.write_text(text.replace('  instanceType: "Standard_NC6s_v3"\n', ""))
    result = kaito("validate", "-f", str(unlisted))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"{unlisted}: warning: resource.instanceType: instance type Standard_NC4ads_H100_v9 is not in the SKU table: "
        "accepted as KAITO does for Standard_N* and Standard_D* names, without a GPU-fit check (the node gets the "
        "preset's GPU count)",
        f"{unlisted}: valid"]
    result = kaito("validate", "-f", str(defaulted))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"{defaulted}: warning: resource.instanceType: instanceType is not set; the default Standard_NC24ads_A100_v4 "
        "applies (KAITO v0.3 defaulted to Standard_NC12s_v3)",
        f"{defaulted}: valid"]
    assert "warning" not in kaito("validate", "-f", str(ROOT / "examples/inference/kaito_workspace_phi_3.yaml")).stdout


def test_invalid_file_lists_every_error_and_exits_1(tmp_path):
    bad = tmp_path / "ws.yaml"
    bad.write_text(_filled((ROOT / "examples/inference/kaito_workspace_phi_3_with_adapters.yaml").read_text())
                   .replace("phi-3-mini-128k-instruct", "phi-9").replace('strength: "1.0"', 'strength: "7"'))
    result = kaito("validate", "-f", str(bad))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines == [
        f"{bad}: inference.adapters[0].strength: Strength value for Adapter must be between 0 and 1: '7' (adapter 'phi-3-adapter')",
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
