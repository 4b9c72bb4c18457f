"""Adapters keep their own names in /v1/models and as the OpenAI `model`, whatever KAITO allows
in them (case, dots), although peft cannot key a module by a dotted name."""
import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.service import Service

NAMES = ["Adapter-1", "adapter.v1", "adapter-1"]


@pytest.fixture(scope="module")
def client(tiny_models, llama_adapters):
    paths = [llama_adapters["alpha"], llama_adapters["beta"], llama_adapters["alpha"]]
    svc = Service({"model": str(tiny_models["llama"]), "served_model_name": "base",
                   "adapters": [{"name": n, "source": str(p), "strength": 0.5} for n, p in zip(NAMES, paths)]},
                  background=False)
    with TestClient(create_app(lambda: svc)) as c:
        yield c
    svc.shutdown()


def test_models_lists_every_adapter_under_its_own_name(client):
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["base", *NAMES]


@pytest.mark.parametrize("name", NAMES)
def test_completion_addressed_to_an_adapter_answers_as_that_model(client, name):
    r = client.post("/v1/completions", json={"model": name, "prompt": "hello", "max_tokens": 3, "temperature": 0})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == name


def test_each_name_reaches_its_own_weights(client):
    """Adapter-1 and adapter-1 are two adapters built from the same weights here (so they answer
    alike); adapter.v1 has other weights and answers differently."""
    def text(model):
        body = {"model": model, "prompt": "The quick brown fox", "max_tokens": 8, "temperature": 0}
        return client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    assert text("Adapter-1") == text("adapter-1") != text("adapter.v1")
