"""Serve application arguments (contract.serveargs.ServeArgs via serving.config.parse_args), deployment options and `kaito up` argument parsing."""
import argparse

import pytest

from serving.cli import parse_adapter, server_args, workspace_args
from serving.config import ConfigError, parse_args, resolve

CONTRACT = {
    "preset": "phi-3-mini-4k-instruct",
    "model": "hf://microsoft/Phi-3-mini-4k-instruct@0a67737cc96d2554230f90338b163bc6380a2a85",
    "served_model_name": "phi-3-mini-4k-instruct",
    "adapters": [{"name": "phi-3-adapter", "source": "/mnt/adapter/phi-3-adapter", "strength": 1.0}],
    "num_replicas": 1, "gpus_per_replica": 1, "trust_remote_code": False,
}


def test_contract_args_are_accepted_and_resolved_from_the_preset():
    r = resolve(parse_args(CONTRACT), cuda_available=True)
    assert r.source == CONTRACT["model"] and r.served_model_name == "phi-3-mini-4k-instruct"
    assert r.device == "cuda" and r.dtype == "bfloat16" and r.context_length == 4096
    assert r.chat_template and "<|assistant|>" in r.chat_template
    assert [(a.name, a.strength) for a in r.args.adapters] == [("phi-3-adapter", 1.0)]


@pytest.mark.parametrize("bad, field", [
    ({**CONTRACT, "replicas": 2}, "replicas"),
    ({**CONTRACT, "adapters": [{"name": "a", "source": "/x", "strength": 2}]}, "adapters.0.strength"),
    ({"served_model_name": "x"}, "args"),
    ({**CONTRACT, "num_replicas": 0}, "num_replicas"),
])
def test_bad_args_name_the_field(bad, field):
    with pytest.raises(ConfigError) as e:
        parse_args(bad)
    assert e.value.param == field and field in str(e.value)


def test_unknown_preset_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match="accepted"):
        resolve(parse_args({"preset": "no-such-model"}))


def test_deployment_options_spread_gpu_replicas_and_size_for_batching():
    from serving.app import deployment_options

    gpu = deployment_options(parse_args({**CONTRACT, "num_replicas": 3}))
    assert gpu["num_replicas"] == 3 and gpu["max_replicas_per_node"] == 1
    assert gpu["ray_actor_options"]["num_gpus"] == 1
    assert gpu["max_ongoing_requests"] > parse_args(CONTRACT).max_batch_size
    cpu = deployment_options(parse_args({"preset": "tiny", "autoscaling": {"max_replicas": 4}}))
    assert "max_replicas_per_node" not in cpu and "num_gpus" not in cpu["ray_actor_options"]
    assert cpu["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in cpu


def test_replica_env_reaches_the_replicas_runtime_env_only_when_given():
    from serving.app import deployment_options

    args = parse_args({"preset": "tiny"})
    assert "runtime_env" not in deployment_options(args)["ray_actor_options"]  # the app's runtime_env stands
    knob = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}
    assert deployment_options(args, replica_env=knob)["ray_actor_options"]["runtime_env"] == {"env_vars": knob}


def test_adapter_flag_parsing():
    assert parse_adapter("a=/x/y:0.5") == {"name": "a", "source": "/x/y", "strength": 0.5}
    assert parse_adapter("a=/x/y") == {"name": "a", "source": "/x/y", "strength": 1.0}
    for bad in ("noequals", "a=/x:1.5", "=/x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_adapter(bad)


def test_workspace_file_gives_preset_and_no_adapters(tmp_path):
    f = tmp_path / "ws.yaml"
    f.write_text("apiVersion: kaito.sh/v1alpha1\nkind: Workspace\nmetadata: {name: w}\n"
                 "resource: {instanceType: Standard_NC12s_v3}\ninference: {preset: {name: falcon-7b}}\n")
    assert workspace_args(str(f)) == {"preset": "falcon-7b", "adapters": []}
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    ns = argparse.Namespace(file=None, model_path=str(model), served_model_name=None, adapter=[],
                            max_batch_size=8)
    assert server_args(ns)["served_model_name"] == "my-model" and "preset" not in server_args(ns)


def test_cluster_head_builds_the_app_from_the_contract_serve_config(tmp_path):
    import yaml

    from serving.cluster import load_config, ray_start_cmd

    cfg = {"proxy_location": "EveryNode", "http_options": {"host": "0.0.0.0", "port": 8000},
           "applications": [{"name": "default", "route_prefix": "/", "import_path": "serving.app:build",
                             "args": CONTRACT}]}
    f = tmp_path / "serve_config.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert load_config(str(f)) == cfg
    assert ray_start_cmd(head=True)[:4] == ["ray", "start", "--disable-usage-stats", "--head"]
    assert "--port=6379" in ray_start_cmd(head=True)
    assert ray_start_cmd(head=False, address="ws:6379", block=True)[-2:] == ["--address=ws:6379", "--block"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("proxy_location: EveryNode\n")
    with pytest.raises(SystemExit, match="applications"):
        load_config(str(bad))
    cfg["applications"][0]["args"] = {**CONTRACT, "replicas": 2}
    f.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit, match="replicas"):
        load_config(str(f))
