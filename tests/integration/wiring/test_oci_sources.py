"""Serving starts from an oci:// model and oci:// adapters, as `kaito up` and the pods do.

A real docker-registry on 127.0.0.1: the tiny model and a LoRA adapter are pushed with the
delivery library, then loaded through the serving paths that take sources (not local paths).
"""
from __future__ import annotations

import asyncio

import torch
import yaml

import artifacts
from serving.adapters import AdapterRegistry
from serving.cli import workspace_args
from serving.engine import Engine
from serving.loading import load_model
from serving.scheduler import SamplingParams
from tinymodel import build_adapter
from tinymodel import build_tiny_model
from tests.support.registry import registry_fixture

registry = registry_fixture()


def _greedy(loaded) -> list[int]:
    model, tok = loaded.model, loaded.tokenizer
    ids = tok("Kubernetes schedules pods", return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    return out[0, ids["input_ids"].shape[1]:].tolist()


def _engine_text(engine, tok, adapter) -> str:
    async def run():
        ids = tok("Kubernetes schedules pods")["input_ids"]
        return "".join([d.text async for d in await engine.generate(ids, SamplingParams(max_tokens=8, temperature=0),
                                                                    adapter=adapter)])
    return asyncio.run(run())


def test_model_and_adapter_from_oci(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("KAITO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KAITO_INSECURE_REGISTRIES", registry.host)
    base = build_tiny_model(tmp_path / "base", architecture="llama")
    adapter = build_adapter(base, tmp_path / "adapter")
    artifacts.push(base, registry.ref("models/tiny", "1"), artifact_type=artifacts.MODEL_ARTIFACT_TYPE)
    artifacts.push(adapter, registry.ref("adapters/sql", "1"))

    from_oci = load_model(registry.ref("models/tiny", "1"))
    local = load_model(str(base))
    assert _greedy(from_oci) == _greedy(local)

    # A Workspace whose adapter is an image reference (bare, as KAITO writes it): the replica pulls it.
    ws = tmp_path / "ws.yaml"
    ws.write_text(yaml.safe_dump({
        "apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace", "metadata": {"name": "w"},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {"preset": {"name": "tiny"}, "adapters": [
            {"source": {"name": "sql", "image": f"{registry.host}/adapters/sql:1"}, "strength": "0.5"}]},
    }))
    args = workspace_args(str(ws))
    [spec] = args["adapters"]
    assert spec == {"name": "sql", "source": registry.ref("adapters/sql", "1"), "strength": 0.5}
    # the replica fetches the adapter itself, through the node cache, and reports its digest
    engine = Engine.from_loaded(from_oci)
    try:
        adapters = AdapterRegistry(engine, base_name="tiny")
        assert adapters.submit(adapters.apply, args["adapters"]).result() == {"sql": "added"}
        [card] = adapters.cards()
        assert card.source == spec["source"] and card.digest.startswith("sha256:") and card.available
        assert _engine_text(engine, from_oci.tokenizer, "sql") != _engine_text(engine, from_oci.tokenizer, "__base__")
    finally:
        engine.shutdown()
