"""Adapter names KAITO accepts (any case, dots, up to 253 characters) become valid, stable and
distinct Kubernetes names, while serving keeps each adapter's own name."""
import kubernetes_validate
import pytest
import yaml

from hooks.core.children.names import KEY_MAX, adapter_key
from hooks.tools.render import render
from hooks.core.validation import validate_workspace
from tests.unit.hooks.conftest import load

NAMES = ["Adapter-1", "adapter.v1", "Phi-Adapter", "phi-adapter", "A" * 200 + ".z"]


def _workspace(names):
    ws = load("examples/inference/kaito_workspace_phi_3.yaml")
    ws["inference"]["adapters"] = [
        {"source": {"name": n, "image": f"myacr.azurecr.io/adapters/a{i}:1",
                    **({"imagePullSecrets": ["pull"]} if i % 2 else {})}, "strength": "0.5"}
        for i, n in enumerate(names)]
    ws["inference"]["adapters"].append(
        {"source": {"name": "From.PVC", "volumeSource": {"persistentVolumeClaim": {"claimName": "adapters"}}}})
    return ws


def _head_pod(ws):
    objects, status = render(ws)
    assert not any(c["reason"] == "InvalidSpec" for c in status["conditions"]), status
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    name = ws["metadata"]["name"]
    deployment, config = by[("Deployment", name)], by[("ConfigMap", name)]
    for version in ("1.25", "1.30", "1.37"):
        kubernetes_validate.validate(deployment, version, strict=True)
    args = yaml.safe_load(config["data"]["serve_config.yaml"])["applications"][0]["args"]
    return deployment["spec"]["template"]["spec"], args


def test_kaito_v03_names_pass_through_the_hooks_into_valid_distinct_children():
    ws = _workspace(NAMES)
    assert validate_workspace(ws).errors == []
    spec, args = _head_pod(ws)
    volumes = [v["name"] for v in spec["volumes"]]
    assert len(set(volumes)) == len(volumes)
    # serving (and so /v1/models and the OpenAI `model`) sees every adapter under its own name
    assert [a["name"] for a in args["adapters"]] == NAMES + ["From.PVC"]
    assert [a["source"] for a in args["adapters"][:len(NAMES)]] == [
        f"oci://myacr.azurecr.io/adapters/a{i}:1" for i in range(len(NAMES))]
    # each pull secret and the user's volume get their own directory, distinct even on a case-insensitive disk
    dirs = [a["docker_config"] for a in args["adapters"] if "docker_config" in a] + [args["adapters"][-1]["source"]]
    assert len({d.lower() for d in dirs}) == len(NAMES) // 2 + 1
    mounted = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert set(dirs) <= mounted
    assert "phi-adapter" in [d.rsplit("/", 1)[1] for d in dirs]  # a plain lowercase name is kept


def test_derived_names_are_stable_across_renders_and_orderings():
    first, _ = _head_pod(_workspace(NAMES))
    again, _ = _head_pod(_workspace(list(reversed(NAMES))))
    assert sorted(v["name"] for v in first["volumes"]) == sorted(v["name"] for v in again["volumes"])


@pytest.mark.parametrize("name", NAMES + ["x", "a-b", "UPPER", "a.b.c", "9" * 253])
def test_adapter_key_is_a_short_lowercase_label(name):
    key = adapter_key(name)
    assert len(key) <= KEY_MAX
    assert key == key.lower() and key[0].isalnum() and key[-1].isalnum()
    assert all(ch.isalnum() or ch == "-" for ch in key)
    assert adapter_key(name) == key


def test_names_differing_only_in_case_get_different_keys():
    assert adapter_key("Phi-Adapter") != adapter_key("phi-adapter") == "phi-adapter"
    assert adapter_key("adapter.v1") != adapter_key("adapter-v1")


def test_a_name_built_to_equal_another_key_is_refused():
    taken = adapter_key("Adapter-1")
    ws = _workspace(["Adapter-1", taken])
    [error] = validate_workspace(ws).errors
    assert error.path == "inference.adapters[1].source.name"
    assert error.message == (f"adapter names 'Adapter-1' and {taken!r} map to the same Kubernetes name {taken!r}; "
                             "rename one")


@pytest.mark.parametrize(("name", "ok"), [
    ("Adapter-1", True), ("adapter.v1", True), ("A" * 253, True), ("A" * 254, False), ("my_adapter", False),
    ("-adapter", False), ("adapter.", False), ("a..b", False), ("adapter v1", False),
])
def test_adapter_name_rule_is_kaito_v03s_set_plus_dots(name, ok):
    ws = _workspace([name])
    errors = [e for e in validate_workspace(ws).errors if e.path == "inference.adapters[0].source.name"]
    assert (errors == []) is ok, errors
