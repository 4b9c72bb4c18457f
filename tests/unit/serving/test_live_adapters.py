"""Live adapters on a running replica (serving/adapters.py behind the real Service; tiny Llama, no Ray):
load, swap and unload without stopping the batch, the registered/resident bounds, the strength
combination, failures that keep the old set, the vLLM adapter API, and per-model metrics."""
import asyncio

import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.errors import ModelNotFound
from serving.protocol import CompletionRequest, KaitoChatRequest
from serving.service import Service

NAME = "base"
PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    from tinymodel import build_tiny_model

    model = build_tiny_model(tmp_path_factory.mktemp("live") / "llama", architecture="llama", context_length=4096)
    s = Service({"model": str(model), "served_model_name": NAME, "max_batch_size": 8, "max_queue": 32,
                 "adapter_api": True, "max_resident_adapters": 2, "max_adapters": 6, "num_threads": 1},
                background=False)
    yield s
    s.shutdown()


@pytest.fixture
def live(svc):
    """The service with no adapters at the start and the end of each test."""
    asyncio.run(svc.apply_adapters([]))
    yield svc
    asyncio.run(svc.apply_adapters([]))


@pytest.fixture(scope="module")
def client(svc):
    with TestClient(create_app(lambda: svc)) as c:
        yield c


def spec(name, path, strength=1.0):
    return {"name": name, "source": str(path), "strength": strength}


async def complete(svc, model, max_tokens=8, prompt=PROMPT, **kw):
    job = svc.prepare_completion(CompletionRequest(model=model, prompt=prompt, max_tokens=max_tokens,
                                                   temperature=0, **kw))
    text, reason = "", None
    async for d in await svc.generate(job):
        text += d.text
        reason = d.finish_reason or reason
    return text, reason


def text(svc, model, **kw):
    return asyncio.run(complete(svc, model, **kw))[0]


def chat(svc):
    async def run():
        job = svc.prepare_kaito(KaitoChatRequest(prompt=PROMPT, generate_kwargs={"max_new_tokens": 8,
                                                                                  "do_sample": False}))
        return "".join([d.text async for d in await svc.generate(job)])
    return asyncio.run(run())


def test_adapters_load_swap_and_unload_on_the_running_engine(live, llama_adapters):
    base = text(live, NAME)
    report = asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["alpha"])]))
    assert report == {"alpha": "added"}
    alpha = text(live, "alpha")
    assert alpha != base and chat(live) == alpha  # /chat: alpha at strength 1
    # a new digest under the same name: swapped, answers change to the new weights
    digest = {c.id: c.digest for c in live.models()}["alpha"]
    report = asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["beta"])]))
    assert report == {"alpha": "updated"}
    assert {c.id: c.digest for c in live.models()}["alpha"] != digest
    assert text(live, "alpha") == text(live, "alpha") != alpha
    assert asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["beta"])])) == {"alpha": "unchanged"}
    assert asyncio.run(live.apply_adapters([])) == {"alpha": "removed"}
    with pytest.raises(ModelNotFound):
        text(live, "alpha")
    assert text(live, NAME) == base and [c.id for c in live.models()] == [NAME]


def test_strength_changes_rebuild_the_chat_combination_and_zero_is_the_base(live, llama_adapters):
    base = text(live, NAME)
    asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["alpha"], 0.0)]))
    assert chat(live) == base
    asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["alpha"], 1.0)]))
    assert chat(live) == text(live, "alpha") != base
    asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["alpha"], 1.0),
                                     spec("beta", llama_adapters["beta"], 0.0)]))
    assert chat(live) == text(live, "alpha")  # beta at 0 adds nothing
    asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["alpha"], 0.0),
                                     spec("beta", llama_adapters["beta"], 1.0)]))
    assert chat(live) == text(live, "beta")


def test_a_swap_mid_stream_takes_effect_between_steps_and_breaks_nothing(live, llama_adapters):
    asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["alpha"])]))

    async def main():
        long = asyncio.create_task(complete(live, "alpha", max_tokens=200, ignore_eos=True))
        others = [asyncio.create_task(complete(live, m, max_tokens=40, ignore_eos=True)) for m in (NAME, "alpha")]
        await asyncio.sleep(0.3)
        report = await live.apply_adapters([spec("alpha", llama_adapters["beta"])])
        after = await complete(live, "alpha")
        return report, await long, await asyncio.gather(*others), after

    report, (_, reason), others, after = asyncio.run(main())
    assert report == {"alpha": "updated"} and reason == "length"
    assert [r for _, r in others] == ["length", "length"]
    assert after[0] == text(live, "alpha")


def test_unload_waits_for_running_sequences_while_new_requests_get_404(live, llama_adapters):
    asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["alpha"])]))

    async def main():
        running = asyncio.create_task(complete(live, "alpha", max_tokens=300, ignore_eos=True))
        await asyncio.sleep(0.3)
        unload = asyncio.create_task(live.unload_adapter("alpha"))
        await asyncio.sleep(0.2)
        with pytest.raises(ModelNotFound):
            live.prepare_completion(CompletionRequest(model="alpha", prompt=PROMPT))
        pending = not unload.done()
        out = await running
        await unload
        return pending, out

    pending, (_, reason) = asyncio.run(main())
    assert pending and reason == "length"  # the unload finished only after the running request
    assert [c.id for c in live.models()] == [NAME]


def test_the_resident_set_is_bounded_and_a_cold_adapter_waits_for_its_load(live, llama_adapters):
    specs = [spec(f"a{i}", llama_adapters["alpha" if i % 2 else "beta"]) for i in range(4)]
    asyncio.run(live.apply_adapters(specs))
    alone = {s["name"]: text(live, s["name"]) for s in specs}
    assert len(live.adapters.resident()) <= 2
    evictions = live.metrics.registry.get_sample_value("kaito_adapter_evictions_total")

    async def mixed():
        names = [s["name"] for s in specs] * 3 + [NAME] * 3
        outs = await asyncio.gather(*[complete(live, n) for n in names])
        return dict(zip(names, (t for t, _ in outs)))

    together = asyncio.run(mixed())
    assert {n: together[n] for n in alone} == alone and together[NAME] == text(live, NAME)
    assert len(live.adapters.resident()) <= 2
    assert live.metrics.registry.get_sample_value("kaito_adapter_evictions_total") > evictions
    with pytest.raises(Exception, match="max_adapters"):
        asyncio.run(live.apply_adapters(specs + [spec(f"x{i}", llama_adapters["alpha"]) for i in range(3)]))


def test_admission_counts_the_memory_of_resident_adapters(live, llama_adapters):
    before = live.engine.kv_tokens
    asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["alpha"])]))
    assert live.engine.kv_tokens < before and live.engine.scheduler.kv_tokens == live.engine.kv_tokens
    asyncio.run(live.apply_adapters([]))
    assert live.engine.kv_tokens == before


def test_a_failed_fetch_keeps_the_old_version_serving_marked_unavailable(live, llama_adapters, tmp_path):
    asyncio.run(live.apply_adapters([spec("alpha", llama_adapters["alpha"])]))
    alpha = text(live, "alpha")
    report = asyncio.run(live.apply_adapters([spec("alpha", tmp_path / "gone"), spec("beta", tmp_path / "nope")]))
    assert report["alpha"].startswith("failed:") and "does not exist" in report["alpha"]
    assert text(live, "alpha") == alpha  # the old version serves on
    cards = {c.id: c for c in live.models()}
    assert not cards["alpha"].available and "does not exist" in cards["alpha"].reason and cards["alpha"].digest
    assert not cards["beta"].available and cards["beta"].digest is None
    with pytest.raises(ModelNotFound, match="unavailable"):
        text(live, "beta")
    assert live.metrics.registry.get_sample_value("kaito_adapter_load_failures_total") >= 2


def test_the_vllm_adapter_api_loads_serves_and_unloads(live, client, llama_adapters):
    r = client.post("/v1/load_lora_adapter", json={"lora_name": "gamma", "lora_path": str(llama_adapters["beta"])})
    assert r.status_code == 200, r.text
    [gamma] = [m for m in client.get("/v1/models").json()["data"] if m["id"] == "gamma"]
    assert gamma["source"] == str(llama_adapters["beta"]) and gamma["digest"].startswith("sha256:")
    body = {"model": "gamma", "prompt": PROMPT, "max_tokens": 8, "temperature": 0}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == text(live, "gamma")
    again = client.post("/v1/load_lora_adapter", json={"lora_name": "gamma", "lora_path": str(llama_adapters["beta"])})
    assert again.status_code == 400 and "already" in again.json()["error"]["message"]
    metrics = client.get("/metrics").text
    assert 'kaito_time_to_first_token_seconds_count{model="gamma"}' in metrics
    assert "kaito_adapter_load_seconds_count" in metrics and "kaito_adapters_resident 1.0" in metrics
    assert client.post("/v1/unload_lora_adapter", json={"lora_name": "gamma"}).status_code == 200
    assert client.post("/v1/completions", json=body).status_code == 404
    assert 'model="gamma"' not in client.get("/metrics").text  # label values: the registered set only
    assert client.post("/v1/unload_lora_adapter", json={"lora_name": "gamma"}).status_code == 404


def test_bad_lora_paths_are_a_400_naming_the_problem_and_change_nothing(live, client, tiny_models, llama_adapters,
                                                                         tmp_path):
    from tinymodel import build_adapter, build_tiny_model

    wide = build_tiny_model(tmp_path / "wide", architecture="llama", hidden_size=96)
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(tiny_models["llama"]): "not a LoRA adapter",  # a model directory, not an adapter
        str(build_adapter(tiny_models["phi3"], tmp_path / "phi3-adapter")): "not in this model",
        str(build_adapter(wide, tmp_path / "wide-adapter")): "another base architecture",
    }
    client.post("/v1/load_lora_adapter", json={"lora_name": "alpha", "lora_path": str(llama_adapters["alpha"])})
    def served():
        return [(m["id"], m.get("digest")) for m in client.get("/v1/models").json()["data"]]
    before = served()
    for path, problem in cases.items():
        r = client.post("/v1/load_lora_adapter", json={"lora_name": "bad", "lora_path": path})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert problem in err["message"] and err["param"] == "lora_path", (path, err)
    assert served() == before
    assert client.post("/v1/completions", json={"model": "alpha", "prompt": "hi", "max_tokens": 2}).status_code == 200


def test_a_set_applied_while_the_model_loads_is_served_once_it_is_ready(tiny_models, llama_adapters):
    import time

    s = Service({"model": str(tiny_models["llama"]), "served_model_name": NAME,
                 "adapters": [spec("alpha", llama_adapters["alpha"])]}, background=True)
    try:
        report = asyncio.run(s.apply_adapters([spec("beta", llama_adapters["beta"])]))
        deadline = time.monotonic() + 120
        while not s.ready.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert report == {"beta": "pending"} or report == {"alpha": "removed", "beta": "added"}
        assert [c.id for c in s.models()] == [NAME, "beta"]  # the later set wins over the initial one
    finally:
        s.shutdown()
