import yaml

from hooks import cli_render


def test_render_prints_claims_children_and_a_ready_status(capsys):
    assert cli_render.main(["-f", "examples/inference/kaito_workspace_phi_3_with_adapters.yaml",
                            "--claim-api", "machine"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    kinds = [d.get("kind") for d in docs[:-1]]
    assert kinds == ["Machine", "ConfigMap", "Service", "Deployment"]
    conds = {c["type"]: c["status"] for c in docs[-1]["status"]["conditions"]}
    assert conds == {"ResourceReady": "True", "InferenceReady": "True", "WorkspaceReady": "True"}
    assert "controller-uid" not in docs[1]["metadata"]["labels"]


def test_render_reports_an_invalid_workspace(tmp_path, capsys):
    ws = yaml.safe_load(open("examples/inference/kaito_workspace_phi_3.yaml"))
    ws["inference"]["preset"]["name"] = "falcon-40b-instruct"
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump(ws))
    assert cli_render.main(["-f", str(path)]) == 1
    captured = capsys.readouterr()
    assert "Insufficient" in captured.err


def test_render_refuses_a_file_without_one_workspace(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_text("kind: ConfigMap\n")
    assert cli_render.main(["-f", str(path)]) == 2
    assert "exactly one Workspace" in capsys.readouterr().err
