"""One derivation and one default per Workspace fact (presets.facts), pinned."""
from __future__ import annotations

import copy

import pytest

import presets
from contract.serveargs import DEFAULT_STRENGTH
from contract.workspace import DEFAULT_INSTANCE_TYPE, ResourceSpec, Workspace, claim_name
from presets.facts import (
    DEFAULT_DISK_GIB, DEFAULT_READINESS_TIMEOUT_SECONDS, UNKNOWN_SKU_GPUS, parse_strength, workspace_facts,
)

WS = {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace", "metadata": {"name": "w", "namespace": "ns"},
      "resource": {"labelSelector": {"matchLabels": {"apps": "phi"},
                                     "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}},
      "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}}}


def _facts(**changes):
    ws = copy.deepcopy(WS)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = ws
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return workspace_facts(Workspace.model_validate(ws))


def test_an_omitted_instance_type_is_the_one_default():
    assert DEFAULT_INSTANCE_TYPE == ResourceSpec.model_fields["instance_type"].default == "Standard_NC24ads_A100_v4"
    facts = _facts()
    assert facts.instance_type == DEFAULT_INSTANCE_TYPE and facts.sku == presets.get_sku(DEFAULT_INSTANCE_TYPE)
    assert facts.gpus_per_node == facts.sku.gpus and facts.node_count == 1


def test_an_unlisted_sku_gets_the_presets_gpu_count_or_one_without_a_preset():
    assert UNKNOWN_SKU_GPUS == 1
    phi = presets.get_preset("phi-3-mini-4k-instruct")
    assert _facts(resource__instanceType="Standard_NC999_future").gpus_per_node == phi.gpu_count
    template = _facts(resource__instanceType="Standard_NC999_future",
                      inference={"template": {"spec": {"containers": []}}})
    assert template.preset is None and template.gpus_per_node == UNKNOWN_SKU_GPUS


@pytest.mark.parametrize("raw, value", [(None, DEFAULT_STRENGTH), ("", DEFAULT_STRENGTH), ("  ", DEFAULT_STRENGTH),
                                        ("0", 0.0), ("0.25", 0.25), ("1", 1.0)])
def test_a_strength_unset_or_empty_is_the_default(raw, value):
    assert parse_strength(raw) == value
    adapter = {"source": {"name": "a", "image": "r.io/a:1"}, **({} if raw is None else {"strength": raw})}
    assert _facts(inference__adapters=[adapter]).adapters[0].strength == value


def test_disk_and_readiness_come_from_the_preset_with_one_default_each():
    phi = presets.get_preset("phi-3-mini-4k-instruct")
    facts = _facts()
    assert (facts.disk_gib, facts.readiness_timeout_seconds) == (phi.disk_gib, phi.readiness_timeout_seconds)
    template = _facts(inference={"template": {"spec": {"containers": []}}})
    assert (template.disk_gib, template.readiness_timeout_seconds) == (DEFAULT_DISK_GIB,
                                                                        DEFAULT_READINESS_TIMEOUT_SECONDS)


def test_labels_claim_names_and_annotations():
    facts = _facts(resource__count=3, metadata__annotations={"kaito.sh/enablelb": "True",
                                                             "kaito.sh/adapter-refresh": "7"})
    assert facts.match_labels == {"apps": "phi", "zone": "a"}
    assert facts.claim_names == tuple(claim_name("ns", "w", i) for i in range(3)) and len(set(facts.claim_names)) == 3
    assert facts.load_balancer and facts.adapter_refresh == "7"


def test_private_access_mode_takes_the_weights_from_the_given_image():
    facts = _facts(inference__preset={"name": "phi-3-mini-4k-instruct", "accessMode": "private",
                                      "presetOptions": {"image": "r.io/w:1", "imagePullSecrets": ["s"]}})
    assert (facts.model_source, facts.model_pull_secret) == ("r.io/w:1", "s")
    assert _facts().model_source == presets.get_preset("phi-3-mini-4k-instruct").source
