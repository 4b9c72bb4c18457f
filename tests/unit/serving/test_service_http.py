"""The real facade (serving.service.Service over a tiny model) behind the HTTP API in-process: the
text KAITO's /chat and the OpenAI routes generate, the length checks, back-pressure and disconnects
on the real engine. The API's own mapping is tested against a fake facade in test_serving_api.py."""
import json
import time

import pytest
from fastapi.testclient import TestClient

from serving.api import MAX_BODY_BYTES, create_app
from serving.errors import NotReady
from serving.service import Service
from tests.support.http_fuzz import error_of

NAME = "tiny-llama"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tinymodel import build_tiny_model

    # a long context, so "endless" streams below really outlast the test (the tiny model is fast)
    return build_tiny_model(tmp_path_factory.mktemp("long") / "llama", architecture="llama", context_length=65536)


@pytest.fixture(scope="module")
def chat_pipeline(svc, model, llama_adapters):
    """transformers' text-generation pipeline over peft's own model with /chat's adapter (alpha at 1.0)."""
    from transformers import pipeline

    from .conftest import peft_model

    peft = peft_model(model, {"alpha": llama_adapters["alpha"]})
    return pipeline("text-generation", model=peft, tokenizer=svc.loaded.tokenizer)


@pytest.fixture(scope="module")
def svc(model, llama_adapters):
    s = Service({"model": str(model), "served_model_name": NAME, "max_batch_size": 2,
                 "max_queue": 1, "adapters": [{"name": "alpha", "source": str(llama_adapters["alpha"]),
                                               "strength": 1.0}]}, background=False)
    yield s
    s.shutdown()


@pytest.fixture(scope="module")
def client(svc):
    with TestClient(create_app(lambda: svc)) as c:
        yield c


def test_chat_matches_a_transformers_pipeline_greedy(svc, client, chat_pipeline):
    """KAITO's /chat is a text-generation pipeline: same text for max_length, return_full_text, cleanup."""
    pipe = chat_pipeline
    prompt = "The quick brown fox"
    n_prompt = len(svc.loaded.tokenizer(prompt)["input_ids"])
    for full in (True, False):
        kw = {"max_length": n_prompt + 7, "do_sample": False}
        got = client.post("/chat", json={"prompt": prompt, "return_full_text": full, "generate_kwargs": kw})
        assert got.status_code == 200, got.text
        want = pipe(prompt, return_full_text=full, clean_up_tokenization_spaces=False, **kw)
        assert got.json() == {"Result": "".join(w["generated_text"] for w in want)}


def test_chat_defaults_are_kaitos(client, chat_pipeline):
    """Only do_sample is overridden: max_length=200 (prompt included), full text, no cleanup."""
    pipe = chat_pipeline
    prompt = "Hello there"
    r = client.post("/chat", json={"prompt": prompt, "generate_kwargs": {"do_sample": False}})
    want = pipe(prompt, max_length=200, do_sample=False, return_full_text=True, clean_up_tokenization_spaces=False)
    assert r.json() == {"Result": want[0]["generated_text"]}
    sampled = client.post("/chat", json={"prompt": prompt})  # do_sample=true, top_k=10 by default
    assert sampled.status_code == 200 and sampled.json()["Result"].startswith(prompt)


def test_openai_errors_use_the_envelope_with_the_right_status(client):
    chat = {"model": NAME, "messages": [{"role": "user", "content": "hi"}]}
    assert error_of(client.post("/v1/chat/completions", json={**chat, "model": "nope"}), 404)["param"] == "model"
    assert error_of(client.post("/v1/chat/completions", json={**chat, "temperature": 3}), 400)["param"] == "temperature"
    assert error_of(client.post("/v1/chat/completions", json={**chat, "messages": []}), 400)["param"] == "messages"
    assert error_of(client.post("/v1/chat/completions", json={**chat, "logprobs": True}), 400)["param"] == "logprobs"
    assert error_of(client.post("/v1/completions", json={"model": NAME}), 400)["param"] == "prompt"
    as_json = {"Content-Type": "application/json"}
    assert error_of(client.post("/v1/completions", content=b"{not json", headers=as_json), 400)["type"] == \
        "invalid_request_error"
    long = {"model": NAME, "prompt": "hello " * 70000, "stream": True}
    err = error_of(client.post("/v1/completions", json=long), 400)  # a real 400, not an error inside a 200 stream
    assert err["code"] == "context_length_exceeded"
    err = error_of(client.post("/v1/completions", json={"model": NAME, "prompt": "hi", "max_tokens": 10**6}), 400)
    assert err["param"] == "max_tokens"
    assert error_of(client.post("/v1/completions", content=b"x" * (MAX_BODY_BYTES + 1), headers=as_json), 413)
    # nothing wedged
    ok = client.post("/v1/completions", json={"model": NAME, "prompt": "hi", "max_tokens": 3})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] <= 3


def test_overload_gets_429_with_retry_after_then_recovers_and_disconnect_frees_slots(client, svc):
    endless = {"model": NAME, "prompt": "hi", "max_tokens": 60000, "ignore_eos": True, "stream": True}
    with client.stream("POST", "/v1/completions", json=endless) as a, \
            client.stream("POST", "/v1/completions", json=endless) as b, \
            client.stream("POST", "/v1/completions", json=endless) as c:  # 2 running + 1 queued
        readers = [s.iter_lines() for s in (a, b)]  # keep them: dropping one closes its connection
        for s, lines in zip((a, b), readers):
            assert s.status_code == 200
            next(lines)
        assert c.status_code == 200 and svc.engine.stats().running == 2
        r = client.post("/v1/completions", json={"model": NAME, "prompt": "hi", "max_tokens": 2})
        err = error_of(r, 429)
        assert err["type"] == "rate_limit_error" and r.headers["Retry-After"] == "1"
    # the three clients went away mid-stream: their slots free without finishing 60000 tokens
    deadline = time.monotonic() + 10
    while svc.engine.stats().running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc.engine.stats().running == 0 and svc.engine.stats().queued == 0
    ok = client.post("/v1/completions", json={"model": NAME, "prompt": "hi", "max_tokens": 2})
    assert ok.status_code == 200
    assert 'kaito_requests_total{route="/v1/completions",status="429"}' in client.get("/metrics").text


def test_health_is_503_until_the_model_is_loaded(tmp_path):
    def starting():
        raise NotReady("the model server is starting")

    with TestClient(create_app(starting)) as c:
        assert c.get("/healthz").status_code == 503
        assert error_of(c.post("/v1/completions", json={"model": "m", "prompt": "x"}), 503)
    failed = Service({"model": str(tmp_path / "missing")}, background=True)
    deadline = time.monotonic() + 30
    while failed.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    with TestClient(create_app(lambda: failed)) as c:
        r = c.get("/healthz")
        assert r.status_code == 503 and "does not exist" in r.json()["error"]["message"]


def test_models_lists_adapters_with_their_parent(client):
    data = client.get("/v1/models").json()["data"]
    assert [(m["id"], m["parent"]) for m in data] == [(NAME, None), ("alpha", NAME)]
    assert client.get("/v1/models/alpha").json()["parent"] == NAME
    assert error_of(client.get("/v1/models/nope"), 404)["code"] == "model_not_found"


def _events(r) -> list:
    """The SSE events of a streamed answer, as the client receives them (one write may hold several)."""
    assert r.status_code == 200, r.text
    return [ln[6:] if ln == "data: [DONE]" else json.loads(ln[6:]) for ln in r.text.splitlines()
            if ln.startswith("data: ")]


def test_coalesced_streams_carry_the_same_text_and_end_like_uncoalesced_ones(tmp_path):
    """stream_interval_ms holds tokens to write fewer, larger chunks: the streamed text equals the
    non-streamed answer, each choice still ends with its finish_reason, then usage and [DONE]."""
    from tinymodel import build_tiny_model

    model = build_tiny_model(tmp_path / "llama", architecture="llama")
    answers = {}
    for interval in (0, 1000):
        s = Service({"model": str(model), "served_model_name": NAME, "stream_interval_ms": interval},
                    background=False)
        try:
            with TestClient(create_app(lambda s=s: s)) as c:
                body = {"model": NAME, "prompt": "The quick brown fox", "max_tokens": 16, "temperature": 0,
                        "ignore_eos": True, "n": 2}
                whole = c.post("/v1/completions", json=body).json()["choices"]
                events = _events(c.post("/v1/completions", json={**body, "stream": True,
                                                                  "stream_options": {"include_usage": True}}))
        finally:
            s.shutdown()
        assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == 32
        for choice in whole:
            mine = [e["choices"][0] for e in events[:-2] if e["choices"][0]["index"] == choice["index"]]
            assert "".join(m["text"] for m in mine) == choice["text"]
            assert mine[-1]["finish_reason"] == "length"
            assert all(m["finish_reason"] is None for m in mine[:-1])
            if interval:  # the first token alone, then the rest (16 tokens in well under a second)
                assert len(mine) <= 3
        answers[interval] = whole
    assert answers[0] == answers[1000]  # the interval changes the writes, never the text


@pytest.mark.parametrize("value", [-1, 1001, "soon"])
def test_a_stream_interval_out_of_range_is_refused_naming_the_field(value):
    from serving.config import ConfigError

    with pytest.raises(ConfigError) as e:
        Service({"preset": "tiny", "stream_interval_ms": value}, background=False)
    assert e.value.param == "stream_interval_ms" and "stream_interval_ms" in str(e.value)
