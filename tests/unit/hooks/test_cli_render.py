import pytest
import yaml

from hooks.tools import render as cli_render
from tests.unit.hooks.conftest import load, load_ready


def test_render_prints_claims_children_and_a_ready_status(tmp_path, capsys):
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump(load_ready("examples/inference/kaito_workspace_phi_3_with_adapters.yaml")))
    assert cli_render.main(["-f", str(path), "--claim-api", "machine"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    kinds = [d.get("kind") for d in docs[:-1]]
    assert kinds == ["Machine", "ConfigMap", "Service", "Deployment", "ServiceAccount", "RoleBinding"]
    conds = {c["type"]: c["status"] for c in docs[-1]["status"]["conditions"]}
    # no serving runtime runs in a render, so no pod has reported its adapters
    assert conds == {"ResourceReady": "True", "InferenceReady": "True", "AdaptersReady": "Unknown",
                     "WorkspaceReady": "True"}
    assert "controller-uid" not in docs[1]["metadata"]["labels"]


def test_render_reports_an_invalid_workspace(tmp_path, capsys):
    ws = yaml.safe_load(open("examples/inference/kaito_workspace_phi_3.yaml"))
    ws["inference"]["preset"]["name"] = "falcon-40b-instruct"
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump(ws))
    assert cli_render.main(["-f", str(path)]) == 1
    captured = capsys.readouterr()
    assert "Insufficient" in captured.err


@pytest.mark.parametrize(("text", "says"), [
    ("kind: ConfigMap\n", "must hold exactly one Workspace"),
    ("kind: Workspace\nmetadata: {name: w}\nresource: {}\n", "apiVersion must be kaito.sh/v1alpha1, got None"),
    ("apiVersion: kaito.sh/v1alpha1\nkind: Workspace\nresource: {}\n", "metadata.name must be set"),
    ("apiVersion: kaito.sh/v1alpha1\nkind: Workspace\nmetadata: {name: w}\nresource: [1]\n", "resource must be a mapping"),
    ("apiVersion: kaito.sh/v1alpha1\nkind: Workspace\nmetadata: {name: [w\n", "YAML syntax error at line"),
])
def test_render_refuses_a_malformed_document_in_one_line(tmp_path, capsys, text, says):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    assert cli_render.main(["-f", str(path)]) == 1
    captured = capsys.readouterr()
    assert says in captured.err and len(captured.err.strip().splitlines()) == 1 and captured.out == ""


@pytest.mark.parametrize("mutation", ["placeholder adapter image", "labelSelector not a mapping", "no preset"])
def test_render_creates_no_node_claims_for_an_invalid_spec(tmp_path, capsys, mutation):
    """The NodeProvisioner agrees with the Workspace sync: an invalid spec gets no GPU nodes."""
    ws = load("examples/inference/kaito_workspace_phi_3_with_adapters.yaml")  # placeholders as in the seed
    if mutation == "labelSelector not a mapping":
        ws = load_ready("examples/inference/kaito_workspace_phi_3_with_adapters.yaml")
        ws["resource"]["labelSelector"] = "apps=phi-3"
    elif mutation == "no preset":
        ws = load_ready("examples/inference/kaito_workspace_phi_3_with_adapters.yaml")
        del ws["inference"]["preset"]
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump(ws))
    assert cli_render.main(["-f", str(path)]) == 1
    captured = capsys.readouterr()
    docs = [d for d in yaml.safe_load_all(captured.out) if d]
    assert [d for d in docs if d.get("kind") in ("NodeClaim", "Machine")] == []
    assert "invalid workspace" in captured.err and "Traceback" not in captured.err
