import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Two architectures, built once per session: {'phi3': dir, 'llama': dir}."""
    from serving.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_model(root / arch, architecture=arch, seed=0) for arch in ("phi3", "llama")}


@pytest.fixture(scope="session")
def llama_adapters(tiny_models, tmp_path_factory):
    from serving.tiny import build_adapter

    root = tmp_path_factory.mktemp("adapters")
    return {name: build_adapter(tiny_models["llama"], root / name, seed=seed)
            for name, seed in (("alpha", 1), ("beta", 2))}
