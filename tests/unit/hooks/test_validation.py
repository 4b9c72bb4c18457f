"""What a user sees from `validate_workspace`: seeds accepted, each kind of mistake named."""
from pathlib import Path

import pytest
import yaml

from hooks.core.errors import WorkspaceInvalid
from hooks.core.validation import FieldError, parse_workspace, validate_workspace
from tests.unit.hooks.conftest import EXAMPLES, PLACEHOLDERS, with_real_references

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES + FIXTURES, ids=lambda p: p.name)
def test_examples_and_seed_listings_are_valid_once_their_placeholders_are_filled(path):
    assert validate_workspace(with_real_references(yaml.safe_load(path.read_text()))).errors == []


SEEDS_WITH_PLACEHOLDERS = [p for p in EXAMPLES + FIXTURES if any(k in p.read_text() for k in PLACEHOLDERS)]


@pytest.mark.parametrize("path", SEEDS_WITH_PLACEHOLDERS, ids=lambda p: p.name)
def test_seed_placeholders_are_refused_naming_the_field_and_lower_case(path):
    """KAITO's verdict on `ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1`: the repository must be
    lower-case; a Job that trains for hours and then cannot push is worse."""
    errors = validate_workspace(yaml.safe_load(path.read_text())).errors
    fields = {"tuning.output.image", "inference.adapters[0].source.image"}
    assert {e.path for e in errors} <= fields and errors
    assert any(e.message.startswith("Repository name must be lowercase") for e in errors)
    assert any("the registry host 'ACR_REPO_HERE.azurecr.io' is not a host name" in e.message for e in errors)


def _messages(ws, old=None):
    return [str(e) for e in validate_workspace(ws, old).errors]


def test_unknown_field_names_path_and_accepted_fields(inference_ws):
    inference_ws["inference"]["presets"] = inference_ws["inference"].pop("preset")
    messages = _messages(inference_ws)
    assert "inference.presets: unknown field; accepted: preset, template, config, adapters" in messages


def test_wrong_type_names_the_field(inference_ws):
    inference_ws["resource"]["count"] = "two"
    assert any(m.startswith("resource.count: Input should be a valid integer") for m in _messages(inference_ws))


def test_enum_lists_accepted_values(inference_ws):
    inference_ws["inference"]["preset"]["accessMode"] = "secret"
    assert _messages(inference_ws) == ["inference.preset.accessMode: invalid value 'secret': 'public' or 'private'"]


def test_unknown_preset_lists_the_catalog(inference_ws):
    inference_ws["inference"]["preset"]["name"] = "gpt-5"
    [message] = _messages(inference_ws)
    assert message.startswith("inference.preset.name: Unsupported inference preset name gpt-5; accepted: phi-2, ")
    assert "falcon-40b" in message and "tiny" in message


def test_untunable_preset_is_refused_for_tuning(tuning_ws):
    tuning_ws["tuning"]["preset"]["name"] = "llama-3.1-8b-instruct"
    [message] = _messages(tuning_ws)
    assert message.startswith("tuning.preset.name: Unsupported tuning preset name llama-3.1-8b-instruct; accepted: ")


@pytest.mark.parametrize(
    ("preset", "instance", "count", "expected"),
    [
        ("falcon-40b", "Standard_NC24ads_A100_v4", 1,
         ["Insufficient number of GPUs: Instance type Standard_NC24ads_A100_v4 provides 1 (count 1 x 1), but preset falcon-40b requires at least 2",
          "Insufficient total GPU memory: Instance type Standard_NC24ads_A100_v4 has a total of 80Gi (count 1 x 80Gi), but preset falcon-40b requires at least 90Gi"]),
        ("phi-4", "Standard_NC6s_v3", 1,
         ["Insufficient total GPU memory: Instance type Standard_NC6s_v3 has a total of 16Gi (count 1 x 16Gi), but preset phi-4 requires at least 40Gi"]),
        ("qwen2.5-coder-7b-instruct", "g4dn.xlarge", 1,
         ["Insufficient total GPU memory: Instance type g4dn.xlarge has a total of 16Gi (count 1 x 16Gi), but preset qwen2.5-coder-7b-instruct requires at least 24Gi"]),
    ],
)
def test_gpu_shortfall_gives_required_and_provided_numbers(inference_ws, preset, instance, count, expected):
    inference_ws["inference"]["preset"]["name"] = preset
    inference_ws["resource"].update(instanceType=instance, count=count)
    assert _messages(inference_ws) == [f"resource.instanceType: {m}" for m in expected]


@pytest.mark.parametrize(("preset", "instance", "count"), [
    ("falcon-40b", "Standard_NC24ads_A100_v4", 2),      # the two-node example
    ("qwen2.5-coder-7b-instruct", "g5.xlarge", 1),       # AWS, 24Gi
    ("phi-4", "Standard_NC40ads_H100_v5", 1),
    ("phi-3-mini-4k-instruct", "Standard_NC6s_v3", 1),    # the seed
])
def test_gpu_fit_accepts_enough_gpus(inference_ws, preset, instance, count):
    inference_ws["inference"]["preset"]["name"] = preset
    inference_ws["resource"].update(instanceType=instance, count=count)
    assert _messages(inference_ws) == []


def test_unknown_azure_gpu_sku_is_allowed_but_other_clouds_are_not(inference_ws):
    inference_ws["resource"]["instanceType"] = "Standard_NC999_future_v9"
    assert _messages(inference_ws) == []
    inference_ws["resource"]["instanceType"] = "m5.large"
    [message] = _messages(inference_ws)
    assert message.startswith("resource.instanceType: Unsupported instance type m5.large. Supported SKUs: Standard_NC6, ")


def test_gated_preset_needs_access_secret(inference_ws):
    inference_ws["inference"]["preset"]["name"] = "llama-3.1-8b-instruct"
    inference_ws["resource"]["instanceType"] = "Standard_NC24ads_A100_v4"
    assert _messages(inference_ws) == [
        "inference.preset.presetOptions.modelAccessSecret: This preset requires authentication and needs a "
        "modelAccessSecret with HF_TOKEN key under presetOptions to download the model"
    ]
    inference_ws["inference"]["preset"]["presetOptions"] = {"modelAccessSecret": "hf-token"}
    assert _messages(inference_ws) == []


def test_errors_accumulate_across_rules_and_catalog(adapters_ws):
    adapters_ws["metadata"]["name"] = "Bad_Name"
    adapters_ws["inference"]["preset"]["name"] = "nope"
    adapters_ws["inference"]["adapters"][0]["strength"] = "2"
    paths = [e.path for e in validate_workspace(adapters_ws).errors]
    assert paths == ["inference.adapters[0].strength", "inference.preset.name", "metadata.name"]


def test_immutable_change_is_reported_only_as_update(inference_ws):
    old = yaml.safe_load(yaml.safe_dump(inference_ws))
    inference_ws["resource"]["instanceType"] = "Standard_NC12s_v3"
    assert _messages(inference_ws) == []
    assert _messages(inference_ws, old) == ["resource.instanceType: field is immutable"]


def test_adapters_are_mutable(inference_ws):
    old = yaml.safe_load(yaml.safe_dump(inference_ws))
    inference_ws["inference"]["adapters"] = [{"source": {"name": "a1", "image": "myacr.azurecr.io/a1:1"}, "strength": "0.3"}]
    assert _messages(inference_ws, old) == []


def test_not_a_workspace():
    assert validate_workspace(["a", "list"]).errors == [FieldError("", "a Workspace must be a mapping, got list")]
    assert validate_workspace({"apiVersion": "v1", "kind": "Pod"}).errors[0].path == "kind"


def test_parse_workspace_raises_with_all_errors(inference_ws):
    inference_ws["inference"]["preset"]["name"] = "nope"
    inference_ws["metadata"]["name"] = "UPPER"
    with pytest.raises(WorkspaceInvalid) as info:
        parse_workspace(inference_ws)
    assert len(info.value.errors) == 2


def test_parse_workspace_returns_typed_model(adapters_ws):
    ws = parse_workspace(adapters_ws)
    assert ws.inference.adapters[0].source.image == "myregistry.azurecr.io/adapters/phi-3-adapter:0.0.1"
    assert ws.resource.count == 1
