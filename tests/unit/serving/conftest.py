import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Two architectures, built once per session: {'phi3': dir, 'llama': dir}."""
    from tinymodel import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_model(root / arch, architecture=arch, seed=0) for arch in ("phi3", "llama")}


@pytest.fixture(scope="session")
def llama_adapters(tiny_models, tmp_path_factory):
    from tinymodel import build_adapter

    root = tmp_path_factory.mktemp("adapters")
    return {name: build_adapter(tiny_models["llama"], root / name, seed=seed)
            for name, seed in (("alpha", 1), ("beta", 2))}


def attach_adapters(engine, specs, **kw):
    """Give a running engine adapters the way a Service does (serving.adapters); returns the registry.
    `specs`: (name, directory, strength) triples."""
    from serving.adapters import AdapterRegistry

    registry = AdapterRegistry(engine, base_name="base", **kw)
    registry.submit(registry.apply, [{"name": n, "source": str(p), "strength": s} for n, p, s in specs]).result()
    return registry


def peft_model(base_dir, adapters, combine=None):
    """An independent peft reference: a fresh copy of the base model from `base_dir` with every adapter
    of `adapters` ({name: directory}) loaded by peft, plus `combine` [(name, strength)] as the adapter
    "combined", built by peft's add_weighted_adapter ("cat", KAITO's strength combination)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    names = list(adapters)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(adapters[names[0]]),
                                      adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(adapters[name]), adapter_name=name)
    if combine:
        model.add_weighted_adapter([n for n, _ in combine], [s for _, s in combine], "combined",
                                   combination_type="cat")
    return model.eval()


SMALL_CONTEXT = 64


@pytest.fixture(scope="session")
def small_service(tmp_path_factory):
    """A tiny Llama with a 64-token context (so any max_tokens a fuzzer picks stays cheap)."""
    from serving.service import Service
    from tinymodel import build_tiny_model

    model = build_tiny_model(tmp_path_factory.mktemp("small") / "llama", architecture="llama",
                             context_length=SMALL_CONTEXT)
    s = Service({"model": str(model), "served_model_name": "small", "max_batch_size": 4, "max_queue": 64,
                 "num_threads": 1},
                background=False)
    yield s
    s.shutdown()


@pytest.fixture(scope="session")
def small_client(small_service):
    from fastapi.testclient import TestClient

    from serving.api import create_app

    with TestClient(create_app(lambda: small_service)) as c:
        yield c
