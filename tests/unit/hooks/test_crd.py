"""The generated CRDs: fresh, valid for Kubernetes 1.30 and 1.37, and accepting our examples."""
import jsonschema
import kubernetes_validate
import pytest
import yaml

from hooks.tools import crdgen
from tests.unit.hooks.conftest import EXAMPLES, ROOT

CRD_DIR = ROOT / "deploy" / "crds"


def _crd(name):
    return yaml.safe_load((CRD_DIR / name).read_text())


def test_committed_crds_match_the_models():
    for name, text in crdgen.render().items():
        assert (CRD_DIR / name).read_text() == text, f"{name} is stale: run `kaito gen-crds`"


def test_check_mode_reports_stale_files(tmp_path, capsys):
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0


@pytest.mark.parametrize("version", ["1.30", "1.37"])
@pytest.mark.parametrize("name", ["kaito.sh_workspaces.yaml", "kaito.sh_nodeprovisioners.yaml"])
def test_crds_pass_kubernetes_validate_strict(name, version):
    kubernetes_validate.validate(_crd(name), version, strict=True)


def test_workspace_crd_shape():
    crd = _crd("kaito.sh_workspaces.yaml")
    spec = crd["spec"]
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["wk", "wks"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [(c["name"].upper(), c.get("priority", 0)) for c in version["additionalPrinterColumns"]]
    assert columns == [("INSTANCE", 0), ("RESOURCEREADY", 0), ("INFERENCEREADY", 0), ("WORKSPACEREADY", 0),
                       ("JOBSTARTED", 1), ("WORKSPACESUCCEEDED", 1), ("AGE", 0)]
    schema = version["schema"]["openAPIV3Schema"]
    # Metacontroller prunes undeclared status fields: status must be declared, conditions typed.
    status = schema["properties"]["status"]["properties"]
    assert status["conditions"]["items"]["required"] == ["type", "status", "reason", "lastTransitionTime"]
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "resource", "inference", "tuning", "status"}


def _assert_structural(node, path="$"):
    """Every node has a type (or preserves unknown fields); no $ref, anyOf or additionalProperties: false."""
    assert "$ref" not in node and "anyOf" not in node, path
    assert node.get("additionalProperties") is not False, path
    assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
    for name, sub in (node.get("properties") or {}).items():
        _assert_structural(sub, f"{path}.{name}")
    if "items" in node:
        _assert_structural(node["items"], f"{path}[]")


@pytest.mark.parametrize("name", ["kaito.sh_workspaces.yaml", "kaito.sh_nodeprovisioners.yaml"])
def test_schemas_are_structural(name):
    _assert_structural(_crd(name)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd_schema(path):
    schema = _crd("kaito.sh_workspaces.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_crd_schema_refuses_wrong_types():
    schema = _crd("kaito.sh_workspaces.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    ws = yaml.safe_load((ROOT / "examples/inference/kaito_workspace_phi_3.yaml").read_text())
    ws["resource"]["count"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(ws, schema)
