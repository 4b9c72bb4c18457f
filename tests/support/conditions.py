"""What `kubectl get workspace` columns show: `{type: status}` of an object's conditions."""
from __future__ import annotations

from typing import Any


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}
