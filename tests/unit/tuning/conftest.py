import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """The tiny preset's tokenizer (chat template included); no model weights are loaded."""
    from transformers import AutoTokenizer

    from tinymodel import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    return AutoTokenizer.from_pretrained(path)
