"""Adapters are runtime state (issue 14): the list travels in the Serve config, so editing
`inference.adapters` changes the ConfigMap and never the pod templates (no pod restarts)."""
import copy

import pytest
import yaml

from hooks.tools.render import render
from tests.unit.hooks.conftest import load


def _children(ws):
    objects, status = render(ws)
    assert not any(c["reason"] == "InvalidSpec" for c in status["conditions"]), status
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _args(objs, name):
    return yaml.safe_load(objs[("ConfigMap", name)]["data"]["serve_config.yaml"])["applications"][0]["args"]


def _adapter(name, tag="1", strength=None):
    a = {"source": {"name": name, "image": f"myacr.azurecr.io/adapters/{name}:{tag}"}}
    return a if strength is None else {**a, "strength": strength}


BASE = [_adapter("alpha"), _adapter("beta", strength="0.5")]
EDITS = {
    "none to some": ([], BASE),
    "add one": (BASE, BASE + [_adapter("gamma")]),
    "remove one": (BASE, BASE[:1]),
    "change a strength": (BASE, [BASE[0], _adapter("beta", strength="0.25")]),
    "change an image tag": (BASE, [_adapter("alpha", tag="2"), BASE[1]]),
}


@pytest.mark.parametrize("before, after", EDITS.values(), ids=EDITS.keys())
@pytest.mark.parametrize("example", ["kaito_workspace_phi_3.yaml", "kaito_workspace_falcon_40b_two_nodes.yaml"])
def test_workspaces_differing_only_in_adapters_have_equal_deployments(example, before, after):
    ws = load(f"examples/inference/{example}")
    name = ws["metadata"]["name"]
    one, two = copy.deepcopy(ws), copy.deepcopy(ws)
    one["inference"]["adapters"], two["inference"]["adapters"] = before, after
    first, second = _children(one), _children(two)
    deployments = sorted(k for k in first if k[0] == "Deployment")
    assert deployments and deployments == sorted(k for k in second if k[0] == "Deployment")
    for key in deployments:
        assert first[key] == second[key], key
    assert first[("Service", name)] == second[("Service", name)]
    assert first[("ConfigMap", name)] != second[("ConfigMap", name)]
    assert [(a["name"], a["source"], a["strength"]) for a in _args(second, name)["adapters"]] == [
        (a["source"]["name"], f"oci://{a['source']['image']}", float(a.get("strength", "1.0"))) for a in after]


def test_the_refresh_annotation_reaches_the_serve_config_and_not_the_pods():
    ws = load("examples/inference/kaito_workspace_phi_3.yaml")
    ws["inference"]["adapters"] = BASE
    name = ws["metadata"]["name"]
    bumped = copy.deepcopy(ws)
    bumped["metadata"].setdefault("annotations", {})["kaito.sh/adapter-refresh"] = "2026-12-01T22:00:00Z"
    first, second = _children(ws), _children(bumped)
    assert "adapter_refresh" not in _args(first, name)
    assert _args(second, name)["adapter_refresh"] == "2026-12-01T22:00:00Z"
    assert first[("Deployment", name)] == second[("Deployment", name)]


def test_a_change_serving_cannot_apply_live_still_rolls_the_pods():
    """The pod template's config hash covers every non-live field: a new preset option is a new pod."""
    ws = load("examples/inference/kaito_workspace_phi_3.yaml")
    name = ws["metadata"]["name"]
    private = copy.deepcopy(ws)
    private["inference"]["preset"].update(accessMode="private", presetOptions={"image": "myacr.azurecr.io/w/phi:1"})
    first, second = _children(ws), _children(private)
    hash_of = lambda objs: objs[("Deployment", name)]["spec"]["template"]["metadata"]["annotations"]  # noqa: E731
    assert hash_of(first) != hash_of(second)


def test_the_pod_template_hash_leaves_out_every_live_field_and_covers_the_rest():
    """A ConfigMap whose args differ only in live fields (contract LIVE_FIELDS) hashes like the original, so
    the pod template does not change; any other argument changes the hash (and so rolls the pods)."""
    from contract.serveargs import LIVE_FIELDS, AdapterArg, ServeArgs
    from contract.serveconfig import ServeApplication, ServeConfig
    from hooks.core.children.inference import restart_hash

    def hashed(**args):
        return restart_hash(ServeConfig(applications=[ServeApplication(args=ServeArgs(preset="tiny", **args))]))

    live = {"adapters": [AdapterArg(name="a", source="oci://r.example/a:1")], "adapter_refresh": "2",
            "adapter_resolve_interval_s": 5.0}
    assert set(live) == LIVE_FIELDS
    assert hashed(**live) == hashed()
    assert hashed(adapter_resolve_interval_s=0) == hashed(adapter_resolve_interval_s=3600) == hashed()
    assert hashed(max_resident_adapters=4) != hashed()
