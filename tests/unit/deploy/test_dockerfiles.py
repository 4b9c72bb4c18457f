"""Both images carry every package setup.cfg ships: a package added to one and not the other would
import in the tests (which run from the checkout) and fail only in a pod."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.images import packages

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("dockerfile", ["hooks.Dockerfile", "runtime.Dockerfile"])
def test_dockerfile_copies_every_shipped_package(dockerfile):
    text = (ROOT / "deploy" / dockerfile).read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, flags=re.M))
    assert set(packages()) <= copied, f"{dockerfile} does not COPY {sorted(set(packages()) - copied)}"
    assert "contract" in packages() and "tinymodel" in packages()
