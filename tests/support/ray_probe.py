"""What a Ray cluster running in a container says about itself: its nodes and where Serve placed
its replicas, read inside the head container (`podman exec ... python -c PROBE`) because the Ray
head keeps its ports on 127.0.0.1 and its session files in the container's own /tmp.

Placement comes from the Serve controller's own view, the one `serve status` and the dashboard's
`/api/serve/applications/` show: each replica with its state and the Ray node id it runs on. Nodes
come from `ray.nodes()` (GCS), with the head marked by Ray's `node:__internal_head__` resource.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

#: Runs inside the head container as a short-lived Ray driver; prints one JSON line.
PROBE = r"""
import json, logging, ray
from ray.serve.context import _get_global_client
ray.init(address="auto", logging_level=logging.ERROR, log_to_driver=False)
nodes = [{"id": n["NodeID"], "alive": n["Alive"], "head": "node:__internal_head__" in n["Resources"],
          "ip": n["NodeManagerAddress"]} for n in ray.nodes()]
replicas = []
try:
    details = _get_global_client().get_serve_details()
except Exception as exc:  # Serve not started yet
    details = {"error": repr(exc)}
for app in (details.get("applications") or {}).values():
    for dep in (app.get("deployments") or {}).values():
        for r in dep.get("replicas") or []:
            replicas.append({"id": r["replica_id"], "state": r["state"], "node": r.get("node_id")})
print("PROBE " + json.dumps({"nodes": nodes, "replicas": replicas}))
"""


@dataclass(frozen=True)
class ClusterView:
    nodes: tuple[dict, ...]
    replicas: tuple[dict, ...]

    @property
    def alive(self) -> dict[str, str]:
        """node id -> "head" or "worker" for the live nodes."""
        return {n["id"]: "head" if n["head"] else "worker" for n in self.nodes if n["alive"]}

    def running_on(self) -> dict[str, int]:
        """Running replicas per role of the live node they are on ("head", "worker")."""
        out: dict[str, int] = {}
        for r in self.replicas:
            if r["state"] == "RUNNING" and r["node"] in self.alive:
                role = self.alive[r["node"]]
                out[role] = out.get(role, 0) + 1
        return out

    def describe(self) -> str:
        nodes = ", ".join(f"{role} {nid[:8]}" for nid, role in self.alive.items())
        reps = ", ".join(f"{r['state']} on {(r['node'] or '?')[:8]}" for r in self.replicas)
        return f"live nodes [{nodes}]; replicas [{reps}]"


def parse(output: str) -> ClusterView:
    line = next((ln for ln in output.splitlines() if ln.startswith("PROBE ")), None)
    if line is None:
        raise ValueError(f"the Ray probe printed no result:\n{output[-2000:]}")
    raw = json.loads(line[len("PROBE "):])
    return ClusterView(tuple(raw["nodes"]), tuple(raw["replicas"]))
