"""Mutated request bodies for the serving HTTP API, and the checks every answer must pass.

Shared by the property tests (tests/unit/serving/test_serving_http_properties.py, small budget) and
bench/serving/fuzz.py (large budget). A case starts from a valid OpenAI or KAITO body and applies a
few mutations: drop a key, swap a value for one of another type (null, huge numbers, NaN and
infinities, huge strings, lone surrogates, deep nesting), add a foreign key, or mutate a nested
object (a message, generate_kwargs). Bodies go out as JSON text, so NaN and surrogate escapes reach
the server exactly as a hostile client would send them.
"""
from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

ROUTES = ("/v1/chat/completions", "/v1/completions", "/chat")
_DEEP = "\x00deep:{}\x00"  # stands for n nested arrays, spliced into the JSON text (json.dumps would recurse)


def valid_bodies(model: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "/v1/chat/completions": [
            {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            {"model": model, "messages": [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
             "max_tokens": 3, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}},
            {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 2,
             "top_k": 5, "repetition_penalty": 1.1, "seed": 7, "n": 2, "stop": ["\n"]},
        ],
        "/v1/completions": [
            {"model": model, "prompt": "The quick brown", "max_tokens": 4},
            {"model": model, "prompt": ["Hello"], "max_tokens": 3, "stream": True, "echo": True, "temperature": 0},
            {"model": model, "prompt": "Once", "max_tokens": 2, "ignore_eos": True, "top_p": 0.9, "stop": "x"},
        ],
        "/chat": [
            {"prompt": "Tell me", "generate_kwargs": {"max_new_tokens": 4}},
            {"prompt": "Hello", "return_full_text": False,
             "generate_kwargs": {"max_length": 12, "do_sample": False, "top_k": 3}},
            {"prompt": "Hi", "clean_up_tokenization_spaces": True,
             "generate_kwargs": {"max_new_tokens": 3, "temperature": 0.7, "seed": 1, "stop_strings": ["."]}},
        ],
    }


def _deep(n: int) -> str:
    return _DEEP.format(n)


_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["a\udfff", "\ud800", "x\udc00y", "\x00", "\u202e\u0301", "🙂" * 3, ""]),
    st.sampled_from([2_000, 200_000]).map(lambda n: "hello " * n),  # beyond the context; beyond the body limit
)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2 ** 70), 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 1, 2 ** 63, 2 ** 64, 10 ** 30, 1e308]),
    _text,
)
weird = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=6) | st.integers(33, 60_000).map(_deep)


@st.composite
def mutated(draw, base: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        _mutate(draw, body, depth=0)
    return body


def _mutate(draw, node: Any, depth: int) -> None:
    if isinstance(node, list):
        if not node:
            node.append(draw(weird))
            return
        i = draw(st.integers(0, len(node) - 1))
        if isinstance(node[i], (dict, list)) and depth < 3 and draw(st.booleans()):
            _mutate(draw, node[i], depth + 1)
        else:
            node[i] = draw(weird)
        return
    keys = sorted(node)
    op = draw(st.sampled_from(["drop", "swap", "add", "nest"] if keys else ["add"]))
    if op == "add":
        node[draw(st.sampled_from(["foo", "user", "logprobs", "tools", "prefix", "best_of", "max_tokens", "n",
                                   "temperature", "stop_token_ids", "top_k", "prompt"]))] = draw(weird)
        return
    key = draw(st.sampled_from(keys))
    if op == "drop":
        del node[key]
    elif op == "nest" and isinstance(node[key], (dict, list)) and depth < 3:
        _mutate(draw, node[key], depth + 1)
    else:
        node[key] = draw(weird)


def encode(body: Any) -> bytes:
    """JSON text as a hostile client sends it: NaN literals, \\udfff escapes, 60,000 '[' deep."""
    text = json.dumps(body)  # ensure_ascii: lone surrogates go out as escapes
    while "\\u0000deep:" in text:
        start = text.index('"\\u0000deep:')
        end = text.index('\\u0000"', start + 2)
        n = int(text[start + len('"\\u0000deep:'):end])
        text = text[:start] + "[" * n + "]" * n + text[end + len('\\u0000"'):]
    return text.encode()


def error_of(resp, status: int) -> dict[str, Any]:
    """The OpenAI error envelope of an httpx/TestClient response with `status`: message, type, param and a
    code that names a condition (never a status number)."""
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] is None or not err["code"].isdigit()  # OpenAI's codes name a condition, never a status
    return err


def check_answer(status: int, headers: dict[str, str], body: bytes, *, stream: bool = False) -> None:
    """No 5xx for client input; every error in the OpenAI envelope with a string-or-null code; a 200
    stream ends in [DONE]."""
    assert status < 500, f"{status} for client input: {body[:500]!r}"
    if status == 200:
        if stream and headers.get("content-type", "").startswith("text/event-stream"):
            assert body.rstrip().endswith(b"data: [DONE]"), body[-200:]
        return
    err = json.loads(body)["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["code"] is None or (isinstance(err["code"], str) and not err["code"].isdigit()), err
    assert err["param"] is None or isinstance(err["param"], str), err
