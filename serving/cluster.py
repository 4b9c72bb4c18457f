"""Pod entrypoints for a cluster: `python -m serving.cluster head|worker`.

    python -m serving.cluster head --config /mnt/config/serve_config.yaml
    python -m serving.cluster worker --address <ws>:6379

The head starts the Ray head on a fixed port (6379; workers join it through the `<ws>` Service only
when count > 1), deploys every application in the mounted Serve config, and stays in the
foreground; it exits non-zero if the deployment fails, so Kubernetes restarts the pod. It then
watches the mounted config (serving/reload.py) and applies adapter changes live, through Serve's
user_config, without new replicas; a change that needs new replicas is logged and waits for the pod's
restart (the pod template carries a hash of those keys). Workers run
`ray start --block` against the head. The dashboard is off and nothing but Serve's HTTP port is meant
for the public Service.
"""
from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading

from contract.argv import cluster_parser
from contract.ports import RAY_PORT, SERVE_PORT
from contract.serveargs import ServeArgsError
from contract.serveconfig import load_serve_config

log = logging.getLogger("serving.cluster")
#: Extra `ray start` flags, for pods on a shared (host) network where the node's default ports may be
#: taken: e.g. "--port=16379 --dashboard-agent-listen-port=52366 --num-cpus=4". Later flags win.
EXTRA_ARGS_ENV = "KAITO_RAY_START_ARGS"


def load_config(path: str) -> dict:
    """The Serve config file, validated with the contract's model (the field named on error)."""
    try:
        return load_serve_config(path).dump()
    except ServeArgsError as e:  # at start-up there is no older version to keep serving
        raise SystemExit(str(e)) from e


def ray_start_cmd(*, head: bool, address: str | None = None, block: bool = False) -> list[str]:
    cmd = ["ray", "start", "--disable-usage-stats"]
    if head:
        cmd += ["--head", f"--port={RAY_PORT}", "--include-dashboard=false"]
    else:
        cmd += [f"--address={address}"]
    cmd += shlex.split(os.environ.get(EXTRA_ARGS_ENV, ""))
    if block:
        cmd.append("--block")
    return cmd


def head(config: str) -> int:
    from ray import serve
    import ray

    cfg = load_config(config)
    subprocess.run(ray_start_cmd(head=True), check=True)
    ray.init(address="auto")
    http = cfg.get("http_options") or {}
    serve.start(proxy_location=cfg.get("proxy_location", "EveryNode"),
                http_options={"host": http.get("host", "0.0.0.0"), "port": http.get("port", SERVE_PORT)})
    from .deploy import deploy

    deploy(cfg)  # raises (the pod restarts) when the application does not come up
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    watch_config(config, cfg, stop)
    stop.wait()
    serve.shutdown()
    ray.shutdown()
    subprocess.run(["ray", "stop"], check=False)
    return 0


def watch_config(path: str, deployed: dict, stop: threading.Event) -> threading.Thread:
    """Apply live edits of the mounted Serve config (`deployed` is what runs) until `stop` is set."""
    from .deploy import deploy
    from .reload import ConfigReloader, FileWatch

    reloader = ConfigReloader(deployed, load=lambda _text: load_serve_config(path).dump(),
                              deploy=lambda new: deploy(new, wait_s=60), what=path)
    return FileWatch(path, reloader).start(stop)


def worker(address: str) -> int:
    os.execvp("ray", ray_start_cmd(head=False, address=address, block=True))
    return 1  # pragma: no cover - exec does not return


def main(argv: list[str] | None = None) -> int:
    a = cluster_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        return head(a.config) if a.role == "head" else worker(a.address)
    except Exception as exc:  # noqa: BLE001 - the last line is the pod's termination message
        log.exception("%s failed", a.role)
        print(f"serving.cluster {a.role}: error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
