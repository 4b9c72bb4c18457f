"""The Ray Serve application on a real local Ray (CPU): the OpenAI client, KAITO /chat, adapters,
batching correctness, errors, back-pressure and disconnects. Ray starts once for the module.

Two applications share the Ray instance: "main" (tiny Phi-3 + two LoRA adapters) at /, and "small"
(tiny Llama with a long context, one running slot and one queued) at /small for overload tests.
"""
import asyncio
import time

import httpx
import pytest

pytestmark = pytest.mark.slow
NAME = "tiny-phi3"


@pytest.fixture(scope="module")
def server(tmp_path_factory, port):
    from serving import ray_local
    from serving.app import build
    from tinymodel import build_adapter
    from tinymodel import build_tiny_model
    from ray import serve

    root = tmp_path_factory.mktemp("models")
    phi3 = build_tiny_model(root / "phi3", architecture="phi3")
    llama = build_tiny_model(root / "llama", architecture="llama", context_length=65536)
    alpha = build_adapter(phi3, root / "alpha", seed=1)
    beta = build_adapter(phi3, root / "beta", seed=2)
    ray_local.start(port=port, num_cpus=2)
    try:
        serve.run(build({"model": str(phi3), "served_model_name": NAME, "max_batch_size": 16, "adapter_api": True,
                         "adapters": [{"name": "alpha", "source": str(alpha), "strength": 1.0},
                                      {"name": "beta", "source": str(beta), "strength": 0.0}]}),
                  name="main", route_prefix="/")
        serve.run(build({"model": str(llama), "served_model_name": "small", "max_batch_size": 1,
                         "max_queue": 1}), name="small", route_prefix="/small")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as c:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                ready = [c.get(p).status_code for p in ("/healthz", "/small/healthz")]
                if ready == [200, 200]:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"apps not ready: {ready}")
            c.adapter_dirs = {"alpha": alpha, "beta": beta}
            yield c
    finally:
        ray_local.stop()


@pytest.fixture(scope="module")
def openai_client(server):
    from openai import OpenAI

    return OpenAI(base_url=str(server.base_url) + "/v1", api_key="unused", max_retries=0)


def test_openai_client_chat_completions_streaming_and_models(openai_client):
    models = openai_client.models.list()
    assert [(m.id, getattr(m, "parent", None)) for m in models.data] == [
        (NAME, None), ("alpha", NAME), ("beta", NAME)]

    chat = openai_client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=8, temperature=0)
    assert chat.choices[0].finish_reason in ("stop", "length") and chat.usage.completion_tokens <= 8
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

    stream = openai_client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}],
                                                   max_tokens=8, temperature=0, stream=True,
                                                   stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == chat.choices[0].message.content  # streaming and not streaming agree (greedy)
    assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens

    comp = openai_client.completions.create(model="alpha", prompt="The quick brown", max_tokens=6,
                                            temperature=0, n=2)
    assert len(comp.choices) == 2 and comp.choices[0].text == comp.choices[1].text  # greedy: same choice
    streamed = "".join(c.choices[0].text for c in openai_client.completions.create(
        model="alpha", prompt="The quick brown", max_tokens=6, temperature=0, stream=True))
    assert streamed == comp.choices[0].text


def test_kaito_chat_fields(server):
    r = server.post("/chat", json={"prompt": "Hello", "generate_kwargs": {"max_length": 12, "do_sample": False}})
    assert r.status_code == 200 and r.json()["Result"].startswith("Hello")
    short = server.post("/chat", json={"prompt": "Hello", "return_full_text": False,
                                       "generate_kwargs": {"max_length": 12, "do_sample": False}})
    assert "Hello" + short.json()["Result"] == r.json()["Result"]
    missing = server.post("/chat", json={"generate_kwargs": {}})
    assert missing.status_code == 400 and missing.json()["detail"] == "Text generation parameter prompt required"


def test_eight_concurrent_greedy_requests_equal_sequential_across_adapters(server):
    prompts = ["Hello there", "The quick brown fox", "def add(a, b):", "Kubernetes schedules"]
    jobs = [(m, p) for m in (NAME, "alpha") for p in prompts]  # 8 requests, two adapters in one batch

    def body(m, p):
        return {"model": m, "prompt": p, "max_tokens": 12, "temperature": 0}

    sequential = [server.post("/v1/completions", json=body(m, p)).json()["choices"][0]["text"] for m, p in jobs]

    async def concurrent():
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as c:
            rs = await asyncio.gather(*[c.post("/v1/completions", json=body(m, p)) for m, p in jobs])
        return [r.json()["choices"][0]["text"] for r in rs]

    assert asyncio.run(concurrent()) == sequential
    assert sequential[:4] != sequential[4:]  # the adapter changes outputs
    # /chat uses the strength-combined adapter: alpha=1, beta=0 -> exactly alpha
    kaito = server.post("/chat", json={"prompt": prompts[0], "return_full_text": False,
                                       "generate_kwargs": {"max_new_tokens": 12, "do_sample": False}})
    assert kaito.json()["Result"] == sequential[4]


def test_errors_use_the_openai_envelope_and_leave_nothing_wedged(server):
    cases = [
        ({"model": "nope", "prompt": "x"}, 404, "model"),
        ({"model": NAME, "prompt": "x", "top_p": 0}, 400, "top_p"),
        ({"model": NAME, "prompt": "x", "n": 0}, 400, "n"),
        ({"model": NAME, "prompt": "hi " * 5000, "stream": True}, 400, "prompt"),  # 400 before any stream
    ]
    for body, status, param in cases:
        r = server.post("/v1/completions", json=body)
        assert r.status_code == status, r.text
        assert r.json()["error"]["param"] == param and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert server.post("/v1/completions", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    ok = server.post("/v1/completions", json={"model": NAME, "prompt": "x", "max_tokens": 2})
    assert ok.status_code == 200


def _gauge(server, prefix, name):
    for line in server.get(f"{prefix}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_overload_429_then_recovery_and_disconnect_frees_the_slot(server):
    endless = {"model": "small", "prompt": "hi", "max_tokens": 60000, "ignore_eos": True, "stream": True}
    with server.stream("POST", "/small/v1/completions", json=endless) as running:
        assert running.status_code == 200
        lines = running.iter_lines()  # keep the iterator: dropping it closes the connection
        next(lines)
        with server.stream("POST", "/small/v1/completions", json=endless) as queued:
            assert queued.status_code == 200
            r = server.post("/small/v1/completions", json={"model": "small", "prompt": "x", "max_tokens": 1})
            assert r.status_code == 429 and r.headers["Retry-After"] == "1"
            assert r.json()["error"]["type"] == "rate_limit_error"
    # both clients hung up: the engine drops their sequences instead of generating 60000 tokens
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (_gauge(server, "/small", "kaito_running_sequences")
                                           or _gauge(server, "/small", "kaito_queued_sequences")):
        time.sleep(0.2)
    assert _gauge(server, "/small", "kaito_running_sequences") == 0
    r = server.post("/small/v1/completions", json={"model": "small", "prompt": "x", "max_tokens": 2})
    assert r.status_code == 200
    metrics = server.get("/small/metrics").text
    assert 'kaito_requests_total{route="/v1/completions",status="429"}' in metrics
    assert "kaito_time_to_first_token_seconds_bucket" in metrics


def _samples(server, prefix, name):
    out = {}
    for line in server.get(f"{prefix}/metrics").text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name):]] = float(value)
    return out


def test_clients_that_go_away_are_counted_as_disconnects_not_5xx(server, port):
    """Through Serve's proxy: gone mid-body (Serve cancels the request) and mid-stream (Serve's receive()
    raises TaskCancelledError): counted in kaito_client_disconnects_total, never a 5xx."""
    import json
    import socket

    def send_and_leave(body: bytes, declared: int, read_first: bool):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"POST /small/v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {declared}\r\n\r\n".encode() + body)
        if read_first:
            assert s.recv(64).startswith(b"HTTP/1.1 200")
        else:
            time.sleep(0.3)
        s.close()

    def gone():
        return sum(_samples(server, "/small", "kaito_client_disconnects_total").values())

    before = gone()
    endless = json.dumps({"model": "small", "prompt": "hi", "max_tokens": 60000, "ignore_eos": True,
                          "stream": True}).encode()
    send_and_leave(endless, len(endless), read_first=True)
    send_and_leave(b'{"model": "small", "pro', 4096, read_first=False)
    deadline = time.monotonic() + 20
    while (gone() < before + 2 or _gauge(server, "/small", "kaito_running_sequences")) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone() == before + 2
    statuses = _samples(server, "/small", "kaito_requests_total")
    assert not [k for k in statuses if 'status="5' in k], statuses
    assert _gauge(server, "/small", "kaito_running_sequences") == 0  # the stream's sequence was cancelled


def test_an_adapter_loaded_through_the_vllm_api_serves_at_once_and_unloads(server):
    """On a running Ray Serve replica: load (vLLM's API, a local directory), answer, list, unload."""
    beta = str(server.adapter_dirs["beta"])
    r = server.post("/v1/load_lora_adapter", json={"lora_name": "gamma", "lora_path": beta})
    assert r.status_code == 200, r.text
    listed = {m["id"]: m for m in server.get("/v1/models").json()["data"]}
    assert listed["gamma"]["source"] == beta and listed["gamma"]["digest"] == listed["beta"]["digest"]
    body = {"prompt": "The quick brown", "max_tokens": 6, "temperature": 0}
    same = [server.post("/v1/completions", json={**body, "model": m}).json()["choices"][0]["text"]
            for m in ("gamma", "beta")]
    assert same[0] == same[1]  # the same weights under another name
    bad = server.post("/v1/load_lora_adapter", json={"lora_name": "bad", "lora_path": "/nonexistent"})
    assert bad.status_code == 400 and "does not exist" in bad.json()["error"]["message"]
    assert server.post("/v1/unload_lora_adapter", json={"lora_name": "gamma"}).status_code == 200
    assert server.post("/v1/completions", json={**body, "model": "gamma"}).status_code == 404
    assert "gamma" not in {m["id"] for m in server.get("/v1/models").json()["data"]}
