import copy
from pathlib import Path

import pytest
import yaml

from tests.support.seeds import PLACEHOLDERS, with_real_references  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


def load(relative: str) -> dict:
    return yaml.safe_load((ROOT / relative).read_text())


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
