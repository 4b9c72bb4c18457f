"""`ray start` flags from KAITO_RAY_START_ARGS come after ours, so they win (click keeps the last)."""
from serving.cluster import EXTRA_ARGS_ENV, ray_start_cmd


def test_extra_ray_start_flags_follow_the_defaults(monkeypatch):
    monkeypatch.setenv(EXTRA_ARGS_ENV, "--port=16379 --num-cpus=1")
    cmd = ray_start_cmd(head=True, block=True)
    assert cmd.index("--port=16379") > cmd.index("--port=6379")
    assert cmd[-1] == "--block" and "--num-cpus=1" in cmd
    monkeypatch.delenv(EXTRA_ARGS_ENV)
    assert "--port=16379" not in ray_start_cmd(head=True)
