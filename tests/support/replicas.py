"""Which OS processes serve a Ray Serve deployment: Ray titles each replica `ray::ServeReplica:<app>:<deployment>`.

The same pids before and after a change mean Serve kept the replicas (no redeploy, no restart).
"""
from __future__ import annotations

from pathlib import Path


def replica_pids(app: str, deployment: str = "ModelServer") -> set[int]:
    title = f"ray::ServeReplica:{app}:{deployment}"
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv0 = cmdline.read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if argv0.startswith(title):
            pids.add(int(cmdline.parent.name))
    return pids
