"""Deploy a Serve config the declarative way, as `serve deploy` does (the Ray side of live reloading).

Only a declaratively deployed application has a code version (a hash of its import path and builder
args); redeploying it with the same version is a lightweight update that keeps the replicas and hands
a changed `user_config` to their `reconfigure()`. `serve.run()` gives every call a new random
version, so each call would replace every replica. The Serve CLI's `serve run CONFIG` and the
dashboard's REST API both call the controller client's `deploy_apps`; with the dashboard off, so
do we.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from .app import DEPLOYMENT_NAME
from .liveconfig import declarative

log = logging.getLogger(__name__)


class DeployError(RuntimeError):
    """An application of the Serve config did not reach RUNNING; the message is Serve's reason."""


def deploy(config: dict[str, Any], *, wait_s: float | None = 600.0) -> None:
    """Deploy (or update) every application in `config` on the running Serve instance; with `wait_s`,
    wait until each is RUNNING and raise DeployError with Serve's message when one fails."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(declarative(config, DEPLOYMENT_NAME))
    _get_global_client().deploy_apps(schema)
    if wait_s is not None:
        wait_running([a.name for a in schema.applications], wait_s)


def wait_running(names: list[str], timeout_s: float) -> None:
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.monotonic() + timeout_s
    time.sleep(0.05)  # the controller takes the new target on its next loop
    while True:
        apps = serve.status().applications
        states = {n: apps.get(n) for n in names}
        failed = {n: s.message for n, s in states.items() if s and s.status == ApplicationStatus.DEPLOY_FAILED}
        if failed:
            raise DeployError("; ".join(f"{n}: {(m.strip().splitlines() or ['deploy failed'])[-1]}"
                                        for n, m in failed.items()))
        if all(s is not None and s.status == ApplicationStatus.RUNNING for s in states.values()):
            return
        if time.monotonic() > deadline:
            raise DeployError(f"applications not running after {timeout_s:g} s: "
                              + ", ".join(f"{n}={s.status if s else 'missing'}" for n, s in states.items()))
        time.sleep(0.1)
