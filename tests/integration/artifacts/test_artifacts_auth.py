"""Credentials against a registry with htpasswd (bcrypt) auth: distribution 2.8 sends a Basic challenge.
(Bearer-token challenges are covered in tests/unit/artifacts/test_artifacts_bearer.py with a token server
stand-in on httpx.MockTransport.) Secrets must never reach logs, error messages or CLI output."""
from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import artifacts
from artifacts import Unauthorized
from tests.support.registry import registry_fixture

USER, PASSWORD = "kaito-tester", "pa55-W0rd-never-logged"
registry = registry_fixture(users={USER: PASSWORD})
SECRETS = (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
WRONG = "wr0ng-secret-never-logged"
WRONG_SECRETS = (WRONG, base64.b64encode(f"{USER}:{WRONG}".encode()).decode())


def _model(root: Path) -> Path:
    root.mkdir()
    (root / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    (root / "adapter_model.safetensors").write_bytes(os.urandom(200_000))
    return root


def test_credentials_from_docker_config_push_and_pull(registry, tmp_path, caplog):
    config = registry.docker_config(tmp_path / "docker")
    ref = registry.ref("adapters/private", "0.0.1")
    with caplog.at_level(logging.DEBUG):
        digest = artifacts.push(_model(tmp_path / "adapter"), ref, docker_config=config)
        result = artifacts.pull(ref, tmp_path / "out", cache_dir=tmp_path / "cache", docker_config=config.parent)
    assert result.digest == digest
    assert (tmp_path / "out" / "adapter_model.safetensors").read_bytes() == (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes()
    assert not any(secret in caplog.text for secret in SECRETS)


def test_dockerconfig_env_is_used(registry, tmp_path, monkeypatch):
    ref = registry.ref("adapters/env", "v1")
    artifacts.push(_model(tmp_path / "adapter"), ref, docker_config=registry.docker_config(tmp_path / "a"))
    monkeypatch.setenv("DOCKER_CONFIG", str(registry.docker_config(tmp_path / "mounted-secret").parent))
    assert artifacts.is_complete(artifacts.resolve(ref, dest=tmp_path / "out", cache_dir=tmp_path / "cache"))


def test_wrong_credentials_are_unauthorized_without_echoing_the_secret(registry, tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ref = registry.ref("adapters/private", "0.0.1")
    bad = registry.docker_config(tmp_path / "bad", USER, WRONG)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(Unauthorized) as err:
            artifacts.pull(ref, tmp_path / "out", cache_dir=tmp_path / "cache", docker_config=bad)
    message = str(err.value)
    assert message.startswith("unauthorized:") and "adapters/private:0.0.1" in message and str(bad) in message
    assert not any(s in message or s in caplog.text for s in WRONG_SECRETS + SECRETS)
    assert not (tmp_path / "out").exists()

    with pytest.raises(Unauthorized, match="no credentials for 127.0.0.1"):
        artifacts.pull(ref, tmp_path / "out", cache_dir=tmp_path / "cache")

    with pytest.raises(Unauthorized):
        artifacts.push(_model(tmp_path / "adapter"), registry.ref("adapters/other", "v1"), docker_config=bad)

    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, "-m", "kaito_cli", "pull", ref, str(tmp_path / "cli"), "--docker-config", str(bad), "-v"],
        capture_output=True, text=True, cwd=root, env=dict(os.environ, KAITO_CACHE_DIR=str(tmp_path / "cache")),
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("kaito pull: error: unauthorized:")
    assert "Traceback" not in proc.stderr
    assert not any(s in proc.stderr + proc.stdout for s in WRONG_SECRETS)
