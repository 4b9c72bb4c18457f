"""What a changed Serve config means: hot keys go live through user_config, anything else waits for a restart;
and the config file is watched the way Kubernetes updates a ConfigMap volume (a `..data` symlink swap)."""
import logging
import os

import yaml

from serving.liveconfig import HOT_KEYS, declarative, plan_reload, split_args
from serving.reload import ConfigReloader, FileWatch

ADAPTERS = [{"name": "a", "source": "oci://127.0.0.1:5000/ad/a:v1", "strength": 1.0}]


def config(**args):
    return {"proxy_location": "EveryNode", "http_options": {"host": "0.0.0.0", "port": 8000},
            "applications": [{"name": "default", "route_prefix": "/", "import_path": "serving.app:build",
                              "args": {"preset": "tiny", "num_replicas": 1, **args}}]}


def test_hot_keys_leave_the_builder_args_for_the_user_config():
    static, hot = split_args({"preset": "tiny", "adapters": ADAPTERS, "adapter_refresh": "r1", "max_batch_size": 4})
    assert static == {"preset": "tiny", "max_batch_size": 4}
    assert hot == {"adapters": ADAPTERS, "adapter_refresh": "r1"}
    assert split_args({"preset": "tiny"})[1] == {"adapters": []}  # reconfigure() always runs on a new replica
    assert set(HOT_KEYS) == {"adapters", "adapter_refresh", "adapter_resolve_interval_s"}


def test_declarative_config_keeps_args_equal_across_adapter_edits():
    one = declarative(config(adapters=ADAPTERS), "ModelServer")
    two = declarative(config(adapters=[]), "ModelServer")
    [app] = one["applications"]
    assert app["args"] == {"preset": "tiny", "num_replicas": 1}
    assert app["deployments"] == [{"name": "ModelServer", "user_config": {"adapters": ADAPTERS}}]
    # the code version Serve compares is a hash of import path and args: equal, so replicas stay
    assert one["applications"][0]["args"] == two["applications"][0]["args"]
    own = config(adapters=[])
    own["applications"][0]["deployments"] = [{"name": "ModelServer", "max_ongoing_requests": 9}, {"name": "Other"}]
    assert declarative(own, "ModelServer")["applications"][0]["deployments"] == [
        {"name": "Other"}, {"name": "ModelServer", "max_ongoing_requests": 9, "user_config": {"adapters": []}}]


def test_only_hot_key_changes_are_live_and_restart_keys_are_named():
    old = config(adapters=ADAPTERS)
    live = plan_reload(old, config(adapters=[], adapter_refresh="2"))
    assert live.live and live.restart_changes == []
    assert live.hot_changes == ["applications[default].args.adapter_refresh", "applications[default].args.adapters"]
    period = plan_reload(old, config(adapters=ADAPTERS, adapter_resolve_interval_s=5))
    assert period.live and period.hot_changes == ["applications[default].args.adapter_resolve_interval_s"]
    mixed = plan_reload(old, config(adapters=[], num_replicas=2, preset="phi-3-mini-4k-instruct"))
    assert not mixed.live
    assert mixed.restart_changes == ["applications[default].args.num_replicas", "applications[default].args.preset"]
    assert "not applied live: applications[default].args.num_replicas" in mixed.describe()
    port = config(adapters=ADAPTERS)
    port["http_options"]["port"] = 9000
    assert plan_reload(old, port).restart_changes == ["http_options"]
    assert plan_reload(old, config(adapters=ADAPTERS)) == plan_reload(old, old)
    assert not plan_reload(old, old).live and plan_reload(old, old).describe() == "no change"


def configmap_volume(tmp_path, text: str, version: int):
    """Write a ConfigMap volume as the kubelet does: files in a timestamped dir, `..data` swapped atomically,
    the visible file a symlink through `..data`."""
    data = tmp_path / f"..2026_12_01_{version}"
    data.mkdir()
    (data / "serve_config.yaml").write_text(text)
    tmp_link = tmp_path / "..data_tmp"
    os.symlink(data.name, tmp_link)
    os.replace(tmp_link, tmp_path / "..data")
    visible = tmp_path / "serve_config.yaml"
    if not visible.is_symlink():
        os.symlink("..data/serve_config.yaml", visible)
    return visible


def test_a_configmap_symlink_swap_is_seen_and_applied_live_once(tmp_path):
    path = configmap_volume(tmp_path, yaml.safe_dump(config(adapters=ADAPTERS)), 1)
    deployed, lines = [], []
    reloader = ConfigReloader(config(adapters=ADAPTERS), load=yaml.safe_load, deploy=deployed.append,
                              what=str(path), report=lambda level, line: lines.append((level, line)))
    watch = FileWatch(str(path), reloader)
    assert not watch.poll()  # the first version is what is served
    configmap_volume(tmp_path, yaml.safe_dump(config(adapters=[])), 2)
    assert watch.poll() and not watch.poll()
    assert deployed == [config(adapters=[])] and reloader.current == config(adapters=[])
    assert lines == [(logging.INFO, f"{path} changed: applying live: applications[default].args.adapters")]


def test_a_restart_key_change_is_logged_not_deployed_and_stays_pending(tmp_path):
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config(adapters=ADAPTERS)))
    deployed, lines = [], []
    reloader = ConfigReloader(config(adapters=ADAPTERS), load=yaml.safe_load, deploy=deployed.append,
                              what=str(path), report=lambda level, line: lines.append((level, line)))
    watch = FileWatch(str(path), reloader)
    path.write_text(yaml.safe_dump(config(adapters=[], num_replicas=3)))
    assert watch.poll()
    assert deployed == [] and reloader.current == config(adapters=ADAPTERS)
    assert lines[-1][0] == logging.WARNING and "num_replicas need new replicas" in lines[-1][1]
    # a later adapter-only edit is still compared with what is served: the replica change is still pending
    path.write_text(yaml.safe_dump(config(adapters=[{**ADAPTERS[0], "strength": 0.5}], num_replicas=3)))
    assert watch.poll() and deployed == []


def test_an_invalid_or_refused_version_keeps_the_served_one(tmp_path):
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config(adapters=ADAPTERS)))
    lines = []

    def refuse(_cfg):
        raise RuntimeError("Serve said no\nsecond line")

    def load(text):
        cfg = yaml.safe_load(text)
        if not isinstance(cfg, dict):
            raise ValueError("not a mapping")
        return cfg

    reloader = ConfigReloader(config(adapters=ADAPTERS), load=load, deploy=refuse,
                              what=str(path), report=lambda level, line: lines.append((level, line)))
    watch = FileWatch(str(path), reloader)
    path.write_text("- just a list\n")
    assert watch.poll()
    assert lines[-1] == (logging.ERROR, f"{path} changed but is not valid; still serving the previous version: "
                                        "not a mapping")
    path.write_text(yaml.safe_dump(config(adapters=[])))
    assert watch.poll()
    assert lines[-1] == (logging.ERROR, f"{path}: the change was not applied: Serve said no")
    assert reloader.current == config(adapters=ADAPTERS)


def test_a_missing_file_mid_swap_is_not_a_change(tmp_path):
    path = tmp_path / "serve_config.yaml"
    path.write_text("a: 1\n")
    seen = []
    watch = FileWatch(str(path), seen.append)
    path.unlink()
    assert not watch.poll()
    path.write_text("a: 1\n")
    assert not watch.poll() and seen == []
