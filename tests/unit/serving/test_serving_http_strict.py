"""The HTTP surface is as strict as OpenAI's and never answers 5xx for client input (in-process app,
real engine over a tiny model): body decoding limits, strict types, unknown fields, media types,
unknown routes, KAITO /chat length limits, and clients that go away."""
import asyncio
import json
import logging

import pytest

from serving.api import create_app
from serving.jsonbody import MAX_JSON_DEPTH
from tests.support.http_fuzz import error_of

from .conftest import SMALL_CONTEXT

JSON = {"Content-Type": "application/json"}
CHAT = {"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
COMP = {"model": "small", "prompt": "hi", "max_tokens": 2}
KAITO = {"prompt": "hi", "generate_kwargs": {"max_new_tokens": 2}}


def raw(client, path, text, headers=JSON):
    return client.post(path, content=text.encode() if isinstance(text, str) else text, headers=headers)


@pytest.mark.parametrize("path,body,param", [
    ("/v1/completions", '{"model": "small", "prompt": "a\\udfff"}', "prompt"),
    ("/v1/chat/completions", '{"model": "small", "messages": [{"role": "user", "content": "a\\udfff"}]}',
     "messages.0.content"),
    ("/chat", '{"prompt": "a\\udfff"}', "prompt"),
    ("/chat", '{"prompt": "hi", "generate_kwargs": {"stop_strings": ["\\ud800"]}}', "generate_kwargs.stop_strings.0"),
])
def test_lone_surrogates_are_a_400_naming_the_field(small_client, path, body, param):
    err = error_of(raw(small_client, path, body), 400)
    assert err["param"] == param and "Unicode" in err["message"]


def test_invalid_utf8_bytes_are_a_400(small_client):
    err = error_of(raw(small_client, "/v1/completions", b'{"model": "small", "prompt": "\xff\xfe"}'), 400)
    assert "UTF-8" in err["message"]


def test_nesting_beyond_the_documented_limit_is_a_400(small_client):
    for n in (50_000, MAX_JSON_DEPTH + 1):
        err = error_of(raw(small_client, "/v1/chat/completions", "[" * n + "]" * n), 400)
        assert str(MAX_JSON_DEPTH) in err["message"]
    nested = {**COMP, "user": None}
    n = MAX_JSON_DEPTH - 1  # the body itself is one level
    deep = json.dumps(nested)[:-1] + ', "stop": ' + "[" * n + "]" * n + "}"
    err = error_of(raw(small_client, "/v1/completions", deep), 400)  # depth ok, type wrong
    assert err["param"] == "stop.0" and "string" in err["message"]


def test_malformed_json_says_where_it_failed(small_client):
    err = error_of(raw(small_client, "/v1/completions", '{"model": "small",\n "prompt": }'), 400)
    assert "line 2 column 12" in err["message"]
    assert "NaN" in error_of(raw(small_client, "/chat", '{"prompt": "hi", "generate_kwargs": '
                                                        '{"temperature": NaN}}'), 400)["message"]
    assert error_of(raw(small_client, "/v1/completions", ""), 400)["message"].startswith("the request body is empty")
    assert "not an array" in error_of(raw(small_client, "/chat", "[1]"), 400)["message"]


@pytest.mark.parametrize("headers", [{"Content-Type": "text/plain"},
                                     {"Content-Type": "application/x-www-form-urlencoded"}, {}])
def test_a_body_that_is_not_declared_json_is_a_415(small_client, headers):
    for path, body in (("/v1/completions", COMP), ("/chat", KAITO)):
        resp = small_client.post(path, content=json.dumps(body).encode(), headers=headers)
        assert "application/json" in error_of(resp, 415)["message"]
    ok = small_client.post("/v1/completions", content=json.dumps(COMP),
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


@pytest.mark.parametrize("field,value", [("max_tokens", True), ("max_tokens", "8"), ("max_tokens", 8.5),
                                         ("temperature", "1"), ("n", 1.0), ("stream", 1), ("seed", 2 ** 64)])
def test_types_are_strict_where_openai_is(small_client, field, value):
    assert error_of(small_client.post("/v1/completions", json={**COMP, field: value}), 400)["param"] == field
    assert error_of(small_client.post("/v1/chat/completions", json={**CHAT, field: value}), 400)["param"] == field


def test_numbers_must_be_finite(small_client):
    assert error_of(raw(small_client, "/v1/completions", json.dumps(COMP)[:-1] + ', "temperature": 1e999}'),
                    400)["param"] == "temperature"
    for value in ("NaN", "Infinity", "1e999"):
        body = '{"prompt": "hi", "generate_kwargs": {"do_sample": true, "temperature": %s}}' % value
        assert error_of(raw(small_client, "/chat", body), 400)["param"] in (None, "generate_kwargs.temperature")


def test_unknown_fields_are_refused_naming_the_field(small_client):
    for path, body in (("/v1/completions", COMP), ("/v1/chat/completions", CHAT), ("/chat", KAITO)):
        err = error_of(small_client.post(path, json={**body, "foo": 1}), 400)
        assert err["param"] == "foo" and err["message"].startswith("Unrecognized request argument supplied: foo")
    err = error_of(small_client.post("/v1/completions", json={**COMP, "stop_token_ids": [2]}), 400)
    assert err["param"] == "stop_token_ids"  # a vLLM extension this server does not implement
    err = error_of(small_client.post("/chat", json={"prompt": "hi", "generate_kwargs": {"bogus": 1}}), 400)
    assert err["param"] == "generate_kwargs.bogus" and "accepted: do_sample" in err["message"]
    bad_msg = {**CHAT, "messages": [{"role": "user", "content": "hi", "extra": 1}]}
    assert error_of(small_client.post("/v1/chat/completions", json=bad_msg), 400)["param"] == "messages.0.extra"


def test_vllm_extensions_and_openai_defaults_of_missing_features_are_accepted(small_client):
    ext = {"top_k": 5, "repetition_penalty": 1.2, "ignore_eos": True, "user": "u1", "logprobs": None,
           "tools": [], "response_format": {"type": "text"}, "presence_penalty": 0}
    r = small_client.post("/v1/chat/completions", json={**CHAT, **ext, "logprobs": False, "top_logprobs": 0})
    assert r.status_code == 200, r.text
    r = small_client.post("/v1/completions", json={**COMP, **ext, "top_k": -1, "best_of": 1})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2  # ignore_eos honoured
    for field, value in (("logprobs", True), ("tools", [{"type": "function"}]), ("presence_penalty", 0.5),
                         ("response_format", {"type": "json_object"})):
        err = error_of(small_client.post("/v1/chat/completions", json={**CHAT, field: value}), 400)
        assert err["param"] == field and "not supported" in err["message"]
    err = error_of(small_client.post("/chat", json={**KAITO, "prefix": "Q: "}), 400)
    assert err["param"] == "prefix" and "not supported" in err["message"]


def test_unknown_routes_and_methods_answer_in_the_envelope(small_client):
    err = error_of(small_client.post("/v1/nope", json={}), 404)
    assert err == {"message": "Invalid URL (POST /v1/nope)", "type": "invalid_request_error", "param": None,
                   "code": None}
    r = small_client.get("/v1/chat/completions")
    assert error_of(r, 405)["message"] == "Invalid method for URL (GET /v1/chat/completions)"
    assert "POST" in r.headers["Allow"]
    assert error_of(small_client.delete("/chat"), 405)
    assert error_of(small_client.post("/v1/completions", content=b"x" * (2 << 20), headers=JSON), 413)["code"] is None


def test_kaito_chat_applies_the_context_limits_of_v1(small_client):
    too_long = {"prompt": "hi", "generate_kwargs": {"max_new_tokens": SMALL_CONTEXT}}
    err = error_of(small_client.post("/chat", json=too_long), 400)
    assert err["code"] == "context_length_exceeded" and err["param"] == "generate_kwargs.max_new_tokens"
    err = error_of(small_client.post("/chat", json={"prompt": "hi", "generate_kwargs": {"max_length": 10 ** 6}}), 400)
    assert err["code"] == "context_length_exceeded" and err["param"] == "generate_kwargs.max_length"
    err = error_of(small_client.post("/chat", json={"prompt": "hi " * SMALL_CONTEXT}), 400)
    assert err["code"] == "context_length_exceeded" and err["param"] == "prompt"
    # KAITO's default max_length (200) is beyond this context: capped, as KAITO users expect, not refused
    r = small_client.post("/chat", json={"prompt": "hi", "generate_kwargs": {"do_sample": False}})
    assert r.status_code == 200, r.text
    for prompt in ([1, 2, 3], {"text": "hi"}, 5):
        assert error_of(small_client.post("/chat", json={"prompt": prompt}), 400)["param"] == "prompt"
    r = small_client.post("/chat", json={"prompt": "hi", "generate_kwargs": {"max_new_tokens": "4"}})
    assert error_of(r, 400)["param"] == "generate_kwargs.max_new_tokens"


def _asgi(app, path: str, body: bytes, *, disconnect_after_body: bool = False, fail_sends_after: int | None = None):
    """Drive the ASGI app the way a server does for a client that goes away."""
    sent: list[dict] = []

    async def main():
        chunks = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if chunks:
                return chunks.pop(0)
            if disconnect_after_body:  # the connection closed right after the request was sent
                return {"type": "http.disconnect"}
            await asyncio.sleep(3600)

        async def send(message):
            if fail_sends_after is not None and len(sent) >= fail_sends_after:
                raise OSError("connection reset by peer")
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                 "query_string": b"", "headers": [(b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        await asyncio.wait_for(app(scope, receive, send), 30)

    asyncio.run(main())
    return sent


def test_a_client_that_goes_away_is_counted_not_a_500(small_service, caplog):
    app = create_app(lambda: small_service)
    count = small_service.metrics.registry.get_sample_value

    def disconnects(route):
        return count("kaito_client_disconnects_total", {"route": route}) or 0

    before = {r: disconnects(r) for r in ("/v1/completions", "/chat")}
    long = {"model": "small", "prompt": "hi", "max_tokens": SMALL_CONTEXT - 8, "ignore_eos": True}
    with caplog.at_level(logging.DEBUG):
        # gone while a non-streamed answer is generated
        kaito = {"prompt": "hi", "generate_kwargs": {"max_new_tokens": SMALL_CONTEXT - 8}}
        _asgi(app, "/chat", json.dumps(kaito).encode(), disconnect_after_body=True)
        # gone mid-stream: the next write fails
        sent = _asgi(app, "/v1/completions", json.dumps({**long, "stream": True}).encode(), fail_sends_after=2)
    assert sent[0]["status"] == 200
    assert disconnects("/chat") == before["/chat"] + 1
    assert disconnects("/v1/completions") == before["/v1/completions"] + 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith(("serving", "uvicorn"))]
    assert "client went away" in caplog.text
    assert not [s for s in small_service.metrics.registry.collect() if s.name == "kaito_requests"
                and any(x.labels.get("status", "").startswith("5") for x in s.samples)]


def test_a_bug_is_a_500_in_the_envelope_with_the_traceback_logged(caplog):
    from fastapi.testclient import TestClient

    class Broken:
        def require_ready(self):
            raise RuntimeError("a bug")

    with TestClient(create_app(lambda: Broken()), raise_server_exceptions=False) as c, \
            caplog.at_level(logging.ERROR):
        err = error_of(c.post("/v1/completions", json=COMP), 500)
        assert err["type"] == "internal_error" and "a bug" not in err["message"]  # details stay in the log
        assert error_of(c.get("/healthz"), 500)["type"] == "internal_error"
    assert "a bug" in caplog.text


def test_null_means_the_default_as_openai_and_kaito_clients_send_it(small_client):
    nulls = {k: None for k in ("temperature", "top_p", "n", "stream", "stop", "seed", "presence_penalty",
                               "frequency_penalty", "user", "logprobs", "stream_options", "top_k")}
    r = small_client.post("/v1/chat/completions", json={**CHAT, **nulls})
    assert r.status_code == 200 and len(r.json()["choices"]) == 1, r.text
    r = small_client.post("/v1/completions", json={"model": "small", "prompt": "hi", "max_tokens": None, **nulls})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 16  # OpenAI's default max_tokens
    r = small_client.post("/chat", json={"prompt": "hi", "return_full_text": None,
                                         "generate_kwargs": {"max_new_tokens": 2, "temperature": None}})
    assert r.status_code == 200 and r.json()["Result"].startswith("hi")
    assert error_of(small_client.post("/v1/completions", json={**COMP, "model": None}), 400)["param"] == "model"
