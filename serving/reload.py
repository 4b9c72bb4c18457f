"""Watch a config file and apply its live changes (the head's mounted Serve config, `kaito up -f FILE`).

Kubernetes updates a ConfigMap volume by writing the new files into a fresh directory and swapping
the `..data` symlink to it atomically, so the watched path's own inode never changes and an inotify
watch on it sees nothing. The file is polled instead: opened by path each time (through the current
symlinks) and compared by content. What the change means is decided by liveconfig.plan_reload: only
the hot keys are applied (by a redeploy that Serve turns into reconfigure() calls); a change that
needs new replicas is logged and left for the pod's restart.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any, Callable

from .liveconfig import ReloadPlan, plan_reload

log = logging.getLogger(__name__)

#: How often the file is read. Half a second keeps a change's first answer well inside 5 s.
POLL_INTERVAL_S = 0.5


class FileWatch:
    """Calls `on_change(content)` when the file's bytes differ from the last seen (not for the first read)."""

    def __init__(self, path: str, on_change: Callable[[bytes], None], *, interval_s: float = POLL_INTERVAL_S):
        self.path = path
        self.on_change = on_change
        self.interval_s = interval_s
        self._seen = self._digest(self._read())

    def _read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:  # through the symlinks as they are now
                return f.read()
        except OSError:
            return None  # mid-swap or removed: keep what is served, look again next time

    @staticmethod
    def _digest(content: bytes | None) -> str | None:
        return None if content is None else hashlib.sha256(content).hexdigest()

    def poll(self) -> bool:
        """One look; True when the content changed (and on_change was called)."""
        content = self._read()
        digest = self._digest(content)
        if digest is None or digest == self._seen:
            return False
        self._seen = digest
        self.on_change(content)
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - one bad version must not end the watch
                log.exception("applying the changed %s failed; still serving the previous version", self.path)

    def start(self, stop: threading.Event) -> threading.Thread:
        t = threading.Thread(target=self.run, args=(stop,), name="config-watch", daemon=True)
        t.start()
        return t


class ConfigReloader:
    """Keeps the deployed Serve config; `load(content)` turns the file into a Serve config (raising on
    bad input), `deploy(config)` redeploys it. A version that needs new replicas is not deployed: the
    running one stays the reference, so the next version is compared with what is really served."""

    def __init__(self, current: dict[str, Any], *, load: Callable[[bytes], dict[str, Any]],
                 deploy: Callable[[dict[str, Any]], None], what: str = "config",
                 report: Callable[[int, str], None] = log.log):
        self.current = current
        self._load = load
        self._deploy = deploy
        self._what = what
        self._report = report  # (logging level, line)
        self.last: ReloadPlan | None = None

    def __call__(self, content: bytes) -> ReloadPlan | None:
        try:
            new = self._load(content)
        except Exception as e:  # noqa: BLE001 - an invalid version is refused, the served one stays
            self._report(logging.ERROR, f"{self._what} changed but is not valid; still serving the previous "
                                        f"version: {_first_line(e)}")
            return None
        plan = self.last = plan_reload(self.current, new)
        if plan.restart_changes:
            self._report(logging.WARNING, f"{self._what} changed: {plan.describe()}")
            return plan
        if plan.live:
            self._report(logging.INFO, f"{self._what} changed: {plan.describe()}")
            try:
                self._deploy(new)
            except Exception as e:  # noqa: BLE001 - Serve refused it: the served version stays
                self._report(logging.ERROR, f"{self._what}: the change was not applied: {_first_line(e)}")
                return plan
            self.current = new
        return plan


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
