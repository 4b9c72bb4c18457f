"""The Serve application arguments: the one model the hooks build the ConfigMap from and serving validates with."""
from __future__ import annotations

import pytest
import yaml

from contract.serveargs import DEFAULT_STRENGTH, LIVE_FIELDS, AdapterArg, ServeArgs, ServeArgsError
from contract.serveconfig import SERVE_CONFIG_DIR, SERVE_CONFIG_KEY, SERVE_CONFIG_PATH, ServeApplication, ServeConfig, \
    load_serve_config

ADAPTER = {"name": "phi-3-adapter", "source": "oci://myacr.azurecr.io/adapters/phi-3:1", "strength": 0.5}


def test_defaults_have_one_value_each():
    args = ServeArgs(preset="tiny")
    assert (args.max_adapters, args.max_resident_adapters, args.adapter_resolve_interval_s) == (64, 8, 60.0)
    assert args.adapter_refresh is None and args.adapter_api is False and args.adapters == []
    assert AdapterArg(name="a", source="/x").strength == DEFAULT_STRENGTH == 1.0


@pytest.mark.parametrize("bad, field", [
    ({"preset": "tiny", "replicas": 2}, "replicas"),
    ({"preset": "tiny", "adapters": [{**ADAPTER, "strength": 2}]}, "adapters.0.strength"),
    ({"preset": "tiny", "adapters": [{**ADAPTER, "path": "/x"}]}, "adapters.0.path"),
    ({"preset": "tiny", "adapters": [{**ADAPTER, "name": "bad name"}]}, "adapters.0.name"),
    ({"served_model_name": "x"}, "args"),
    ({"preset": "tiny", "adapters": [ADAPTER, ADAPTER]}, "args"),
])
def test_bad_args_name_the_field(bad, field):
    with pytest.raises(ServeArgsError) as e:
        ServeArgs.from_dict(bad)
    assert e.value.param == field and field in str(e.value)


def test_the_registered_set_is_bounded_by_max_adapters():
    many = [{**ADAPTER, "name": f"a{i}"} for i in range(65)]
    with pytest.raises(ServeArgsError, match="max_adapters"):
        ServeArgs.from_dict({"preset": "tiny", "adapters": many})
    assert len(ServeArgs.from_dict({"preset": "tiny", "adapters": many, "max_adapters": 65}).adapters) == 65


def test_restart_fields_leave_out_exactly_the_live_fields():
    args = ServeArgs(preset="tiny", adapters=[AdapterArg(**ADAPTER)], adapter_refresh="1", num_replicas=2)
    assert LIVE_FIELDS == {"adapters", "adapter_refresh", "adapter_resolve_interval_s"}
    assert args.restart_fields() == {"preset": "tiny", "num_replicas": 2}
    edited = args.model_copy(update={"adapters": [], "adapter_refresh": "2", "adapter_resolve_interval_s": 5.0})
    assert edited.restart_fields() == args.restart_fields()


def test_a_serve_config_file_round_trips_with_only_the_fields_set(tmp_path):
    config = ServeConfig(applications=[ServeApplication(args=ServeArgs(preset="tiny", adapters=[AdapterArg(**ADAPTER)]))])
    dumped = config.dump()
    assert dumped["applications"][0]["args"] == {"preset": "tiny", "adapters": [ADAPTER]}
    path = tmp_path / SERVE_CONFIG_KEY
    path.write_text(yaml.safe_dump(dumped))
    assert load_serve_config(str(path)).applications[0].args == config.applications[0].args
    assert SERVE_CONFIG_PATH == f"{SERVE_CONFIG_DIR}/{SERVE_CONFIG_KEY}"


@pytest.mark.parametrize("text, where", [
    ("proxy_location: EveryNode\n", "applications"),
    ("applications: [{args: {preset: tiny, replicas: 2}}]\n", "applications.0.args.replicas"),
    ("applications: [\n", "config"),
])
def test_a_bad_serve_config_file_names_the_file_and_the_field(tmp_path, text, where):
    path = tmp_path / "serve_config.yaml"
    path.write_text(text)
    with pytest.raises(ServeArgsError) as e:
        load_serve_config(str(path))
    assert e.value.param == where and str(path) in str(e.value)
