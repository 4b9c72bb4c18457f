"""Admission's image-reference verdict is the puller's: a reference passes the CEL rules and the
Python twins exactly when artifacts.reference parses it with a tag or digest, so no Workspace gets
through to a push or pull that cannot parse its reference."""
import pytest
import yaml

from artifacts.errors import InvalidReference
from artifacts.reference import parse_oci
from hooks.tools import crdgen
from hooks.core import rules
from hooks.core.validation import validate_workspace
from tests.support import crd_cel
from tests.unit.hooks.conftest import load_ready

SCHEMA = yaml.safe_load(crdgen.render()["kaito.sh_workspaces.yaml"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
DIGEST = "sha256:" + "0123456789abcdef" * 4

# (reference, accepted)
REFERENCES = [
    ("aimodels.azurecr.io/data-image:latest", True),
    ("data-image:latest", True),                           # Docker Hub library/data-image
    ("old-image:latest", True),
    ("team/data:1.0", True),
    ("MyACR.azurecr.io/data:0.1", True),                  # host names are case-insensitive
    ("localhost:5000/a/b/c:v1", True),
    ("registry:5000/data:1", True),
    ("[::1]:5000/data:1", True),
    (f"myacr.azurecr.io/data@{DIGEST}", True),
    (f"myacr.azurecr.io/data:1@{DIGEST}", True),
    ("myacr.azurecr.io/a.b_c__d--e:TAG_1.x", True),
    ("foo.bar:1", True),                                   # one component: a repository, dots allowed
    ("aimodels.azurecr.io/data-image", False),             # no tag or digest
    ("data-image", False),
    ("ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1", False),
    ("AZURE_ACR.azurecr.io/test:0.0.0", False),            # '_' is not in a host name
    ("myacr.azurecr.io/Data:0.1", False),
    ("Data-Image:latest", False),
    ("PULLREGISTRY/DATA_NAME_HERE:0.0.1", False),          # no '.', so a Docker Hub path, upper case
    ("Team/data:1", False),
    ("<YOUR_IMAGE>", False),
    ("<YOUR IMAGE URL>", False),
    ("!ValidImage", False),
    ("myacr.azurecr.io//data:1", False),
    ("myacr.azurecr.io/data:", False),
    ("myacr.azurecr.io/data:-x", False),
    ("myacr.azurecr.io/data@sha256:abc", False),
    ("myacr.azurecr.io/-data:1", False),
    ("my..acr.io/data:1", False),
    ("myacr.azurecr.io/data:1 ", False),
]


def _parses(ref: str) -> bool:
    try:
        parsed = parse_oci(ref)
    except InvalidReference:
        return False
    return bool(parsed.tag or parsed.digest)


def _workspace(ref: str) -> dict:
    ws = load_ready("examples/tuning/kaito_workspace_tuning_phi_3.yaml")
    ws["tuning"]["output"]["image"] = ref
    return ws


@pytest.mark.parametrize(("ref", "accepted"), REFERENCES, ids=[r for r, _ in REFERENCES])
def test_cel_python_and_the_puller_agree(ref, accepted):
    image_messages = (rules.message("output-image-format"), rules.message("output-image-lowercase"))
    python_ok = not [e for e in validate_workspace(_workspace(ref)).errors if e.path == "tuning.output.image"]
    cel_ok = not [v for v in crd_cel.violations(SCHEMA, _workspace(ref)) if v.message in image_messages]
    assert (python_ok, cel_ok, _parses(ref)) == (accepted, accepted, accepted)


def test_upper_case_is_its_own_message_naming_the_field():
    [error] = [e for e in validate_workspace(_workspace("myacr.azurecr.io/Data:0.1")).errors if e.path == "tuning.output.image"]
    assert error.message == "Repository name must be lowercase (tuning.output.image): 'myacr.azurecr.io/Data:0.1'"
