import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


# The seed documents' placeholders (kept verbatim in examples/) and real lower-case references a
# user would put in their place; admission refuses the former, as KAITO does.
PLACEHOLDERS = {
    "ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1": "myregistry.azurecr.io/adapters/phi-3-adapter:0.0.1",
    "ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1": "myregistry.azurecr.io/adapters/phi-3-tuned:0.0.1",
}


def load(relative: str) -> dict:
    return yaml.safe_load((ROOT / relative).read_text())


def with_real_references(node):
    """A copy of a document with every seed placeholder replaced by a real reference."""
    if isinstance(node, dict):
        return {k: with_real_references(v) for k, v in node.items()}
    if isinstance(node, list):
        return [with_real_references(v) for v in node]
    return PLACEHOLDERS.get(node, node) if isinstance(node, str) else node


def load_ready(relative: str) -> dict:
    """The example as a user applies it: placeholders filled in."""
    return with_real_references(load(relative))


@pytest.fixture
def inference_ws() -> dict:
    return copy.deepcopy(load("examples/inference/kaito_workspace_phi_3.yaml"))


@pytest.fixture
def adapters_ws() -> dict:
    return load_ready("examples/inference/kaito_workspace_phi_3_with_adapters.yaml")


@pytest.fixture
def tuning_ws() -> dict:
    return load_ready("examples/tuning/kaito_workspace_tuning_phi_3.yaml")
