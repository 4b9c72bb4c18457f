"""`kaito pull --from-serve-config`: the serving pod's one prefetch init container, against a real
registry that needs credentials. Every adapter the Serve config lists lands in the cache with its own
docker_config; a local directory is left alone; the first adapter that cannot be fetched fails the
command with one line naming it (the line a Workspace condition quotes)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

import artifacts
from contract.argv import prefetch_command
from contract.serveargs import AdapterArg, ServeArgs
from contract.serveconfig import ServeApplication, ServeConfig
from tests.support.registry import registry_fixture

ROOT = Path(__file__).resolve().parents[3]
registry = registry_fixture(users={"prefetcher": "pre-fetch-S3cret"})


def _adapter(root: Path, seed: int) -> Path:
    root.mkdir()
    (root / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA", "seed": seed}))
    (root / "adapter_model.safetensors").write_bytes(os.urandom(50_000))
    return root


def _prefetch(tmp_path: Path, adapters: list[AdapterArg]) -> subprocess.CompletedProcess:
    config = tmp_path / "serve_config.yaml"
    config.write_text(yaml.safe_dump(ServeConfig(applications=[ServeApplication(
        args=ServeArgs(preset="tiny", adapters=adapters))]).dump()))
    command = prefetch_command(str(config))
    assert command[:2] == ["kaito", "pull"]
    return subprocess.run([sys.executable, "-m", "kaito_cli", *command[1:]], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, KAITO_CACHE_DIR=str(tmp_path / "cache"), HOME=str(tmp_path)))


def test_every_listed_adapter_is_fetched_into_the_cache_with_its_own_credentials(registry, tmp_path):
    creds = registry.docker_config(tmp_path / "secret")
    sources = {}
    for i, name in enumerate(("alpha", "beta")):
        ref = registry.ref(f"adapters/{name}", "1")
        artifacts.push(_adapter(tmp_path / name, i), ref, docker_config=creds)
        sources[name] = ref  # oci://HOST/REPO:TAG
    local = _adapter(tmp_path / "on-a-volume", 9)
    proc = _prefetch(tmp_path, [AdapterArg(name=n, source=s, docker_config=str(creds.parent)) for n, s in sources.items()]
                     + [AdapterArg(name="local", source=str(local))])
    assert proc.returncode == 0, proc.stderr
    fetched = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert set(fetched) == {"alpha", "beta"}  # the local directory is read in place, not copied
    for name in ("alpha", "beta"):
        path = Path(fetched[name])
        assert (tmp_path / "cache") in path.parents
        assert (path / "adapter_model.safetensors").read_bytes() == (tmp_path / name / "adapter_model.safetensors").read_bytes()


def test_an_adapter_that_cannot_be_fetched_fails_the_pod_with_its_name(registry, tmp_path):
    creds = registry.docker_config(tmp_path / "secret")
    source = registry.ref("adapters/missing", "1")
    proc = _prefetch(tmp_path, [AdapterArg(name="missing", source=source, docker_config=str(creds.parent))])
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last.startswith(f"kaito pull: error: adapter missing ({source}):"), proc.stderr
    no_creds = _prefetch(tmp_path, [AdapterArg(name="private", source=source)])
    assert no_creds.returncode == 1 and "adapter private" in no_creds.stderr.strip().splitlines()[-1]
    assert "pre-fetch-S3cret" not in proc.stderr + no_creds.stderr


def test_a_bad_serve_config_is_one_line_naming_the_field(tmp_path):
    config = tmp_path / "serve_config.yaml"
    config.write_text("applications: [{args: {preset: tiny, adapters: [{name: a, source: /x, path: /x}]}}]\n")
    proc = subprocess.run([sys.executable, "-m", "kaito_cli", "pull", "--from-serve-config", str(config)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert "applications[0].serving args: adapters.0.path" in proc.stderr.strip().splitlines()[-1]
