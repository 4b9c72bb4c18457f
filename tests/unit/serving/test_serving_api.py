"""The HTTP API over a fake facade (no torch): protocol -> facade calls, answers -> JSON and SSE,
facade errors -> statuses in the OpenAI envelope, and the gated runtime adapter API."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.errors import BadRequest
from serving.facade import ModelCard
from tests.support.http_fuzz import error_of

from .fake_facade import BASE_NAME, FakeFacade

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def fake():
    return FakeFacade()


@pytest.fixture
def client(fake):
    with TestClient(create_app(lambda: fake)) as c:
        yield c


def events(resp) -> list:
    lines = [ln for ln in resp.text.split("\n\n") if ln]
    assert all(ln.startswith("data: ") for ln in lines)
    return [ln[6:] if ln == "data: [DONE]" else json.loads(ln[6:]) for ln in lines]


def test_kaito_chat_answers_the_prompt_plus_the_generated_text(client, fake):
    assert client.post("/chat", json={"prompt": "hi"}).json() == {"Result": "hichat"}
    assert client.post("/chat", json={"prompt": "hi", "return_full_text": False}).json() == {"Result": "chat"}
    assert fake.jobs[-1].adapter is None  # /chat: the combined adapter
    fake.answers[None] = "a , b"
    r = client.post("/chat", json={"prompt": "x", "return_full_text": False, "clean_up_tokenization_spaces": True})
    assert r.json() == {"Result": "a, b"}
    closed = fake.closed
    r = client.post("/chat", json={"prompt": "x", "generate_kwargs": {"max_new_tokens": 0}})
    assert r.json() == {"Result": "x"} and fake.closed == closed  # nothing to generate: the engine is not asked


def test_kaito_chat_missing_prompt_and_bad_kwargs_are_kaitos_400(client):
    for body in ({}, {"generate_kwargs": {}}, {"prompt": ""}):
        r = client.post("/chat", json=body)
        assert r.status_code == 400
        assert r.json()["detail"] == "Text generation parameter prompt required"
    r = client.post("/chat", json={"prompt": "hi", "generate_kwargs": {"num_beams": 4}})
    assert error_of(r, 400)["param"] == "generate_kwargs.num_beams"
    r = client.post("/chat", json={"prompt": "hi", "generate_kwargs": {"bogus": 1}})
    assert "accepted" in error_of(r, 400)["message"]


def test_completions_answer_every_choice_with_usage_and_echo(client, fake):
    r = client.post("/v1/completions", json={"model": BASE_NAME, "prompt": "abc", "n": 2, "echo": True})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "text_completion" and body["model"] == BASE_NAME
    assert [c["text"] for c in body["choices"]] == ["abchello world"] * 2
    assert [c["finish_reason"] for c in body["choices"]] == ["length", "length"]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 22, "total_tokens": 25}
    r = client.post("/v1/completions", json={"model": f"{BASE_NAME}:alpha", "prompt": "abc", "max_tokens": 3})
    assert r.json()["model"] == f"{BASE_NAME}:alpha" and r.json()["choices"][0]["text"] == "ALP"
    assert fake.jobs[-1].adapter == "alpha"


def test_chat_stream_starts_with_the_role_and_ends_with_usage_then_done(client):
    body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    ev = events(r)
    assert ev[-1] == "[DONE]"
    assert ev[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    chunks = ev[1:-2]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "ALPHA"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and {c["model"] for c in chunks} == {"alpha"}
    usage = ev[-2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5


def test_facade_errors_are_statuses_in_the_envelope_before_any_stream(client, fake):
    chat = {"model": BASE_NAME, "messages": [{"role": "user", "content": "hi"}]}
    assert error_of(client.post("/v1/chat/completions", json={**chat, "model": "nope"}), 404)["code"] == \
        "model_not_found"
    err = error_of(client.post("/v1/completions", json={"model": BASE_NAME, "prompt": "x" * 100, "stream": True}), 400)
    assert err["code"] == "context_length_exceeded"
    fake.busy = True
    for stream in (False, True):
        r = client.post("/v1/completions", json={"model": BASE_NAME, "prompt": "hi", "stream": stream})
        assert error_of(r, 429)["type"] == "rate_limit_error" and r.headers["Retry-After"] == "1"
    fake.busy, fake.ready = False, False
    assert error_of(client.post("/v1/completions", json={"model": BASE_NAME, "prompt": "hi"}), 503)
    assert error_of(client.get("/healthz"), 503)
    assert ("/v1/completions", 429) in fake.requests and ("/v1/completions", 503) in fake.requests


def test_models_list_exactly_the_facades_cards_with_source_digest_and_availability(client, fake):
    fake.cards.append(ModelCard("beta", BASE_NAME, "oci://r/beta:1", None, available=False, reason="fetch failed: 404"))
    data = client.get("/v1/models").json()["data"]
    assert [(m["id"], m["parent"]) for m in data] == [(BASE_NAME, None), ("alpha", BASE_NAME), ("beta", BASE_NAME)]
    alpha, beta = data[1], data[2]
    assert (alpha["source"], alpha["digest"], alpha["available"]) == ("/adapters/alpha", "sha256:aa", True)
    assert "reason" not in alpha
    assert (beta["available"], beta["reason"]) == (False, "fetch failed: 404")
    assert client.get("/v1/models/beta").json()["root"] == "oci://r/beta:1"
    assert error_of(client.get("/v1/models/nope"), 404)["code"] == "model_not_found"


def test_the_adapter_api_is_a_404_while_off(client, fake):
    for path, body in (("/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/x"}),
                       ("/v1/unload_lora_adapter", {"lora_name": "x"}), ("/v1/load_lora_adapter", {"bad": 1})):
        err = error_of(client.post(path, json=body), 404)
        assert path in err["message"]
    assert fake.loads == [] and fake.unloads == []


def test_the_adapter_api_checks_the_token_and_passes_errors_through(client, fake):
    fake.adapter_api, fake.token = True, "s3cret"
    load = {"lora_name": "gamma", "lora_path": "/adapters/gamma"}
    assert error_of(client.post("/v1/load_lora_adapter", json=load), 401)["type"] == "authentication_error"
    wrong = {"Authorization": "Bearer nope"}
    assert error_of(client.post("/v1/load_lora_adapter", json=load, headers=wrong), 401)
    auth = {"Authorization": "Bearer s3cret"}
    r = client.post("/v1/load_lora_adapter", json=load, headers=auth)
    assert r.status_code == 200 and "gamma" in r.text and fake.loads == [("gamma", "/adapters/gamma")]
    assert error_of(client.post("/v1/load_lora_adapter", json={"lora_name": "g"}, headers=auth), 400)["param"] == \
        "lora_path"
    assert error_of(client.post("/v1/load_lora_adapter", json={**load, "lora_name": "a b"}, headers=auth),
                    400)["param"] == "lora_name"
    fake.load_error = BadRequest("lora_path: /x holds no adapter_config.json", param="lora_path")
    err = error_of(client.post("/v1/load_lora_adapter", json=load, headers=auth), 400)
    assert "adapter_config.json" in err["message"]
    assert client.post("/v1/unload_lora_adapter", json={"lora_name": "alpha"}, headers=auth).status_code == 200
    assert error_of(client.post("/v1/unload_lora_adapter", json={"lora_name": "zz"}, headers=auth), 404)
    assert fake.unloads == ["alpha"]


def test_a_reader_that_leaves_mid_stream_closes_the_facades_stream(fake):
    """Driven as a server drives the app for a client that goes away: the third write fails."""
    import asyncio

    fake.endless = True
    app, sent = create_app(lambda: fake), []
    body = json.dumps({"model": BASE_NAME, "prompt": "hi", "stream": True}).encode()

    async def main():
        chunks = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if chunks:
                return chunks.pop(0)
            await asyncio.sleep(3600)

        async def send(message):
            if len(sent) >= 2:
                raise OSError("connection reset by peer")
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/completions", "raw_path": b"/v1/completions",
                 "root_path": "", "query_string": b"", "headers": [(b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        await asyncio.wait_for(app(scope, receive, send), 30)

    asyncio.run(main())
    assert sent[0]["status"] == 200 and sent[1]["body"].startswith(b"data: ")
    assert fake.closed == 1 and fake.disconnects == ["/v1/completions"]


def test_the_api_and_its_fake_import_no_torch():
    code = ("import sys; import serving.api; import tests.unit.serving.fake_facade; "
            "assert not {'torch', 'transformers', 'peft'} & set(sys.modules), sorted(sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
