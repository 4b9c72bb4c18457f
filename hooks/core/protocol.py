"""The v2 request models of the four hook endpoints: what `metacontroller.api.decode` checks.

`metacontroller.api` types the protocol (identity, map keys, status conventions); these add what
the hooks themselves read from the request, so a shape error is a 422 naming its path instead of
an exception deep in a sync (DESIGN.md §5: never a 200 that drops children, never a 5xx for input).
"""
from __future__ import annotations

from typing import Optional

from pydantic import Field, StrictStr, model_validator

from metacontroller.api import CustomizeRequest, KubeObject, ObjectStatus, SyncRequest, group_key, json_path

WORKSPACE_KEY = group_key("kaito.sh/v1alpha1", "Workspace")
NODE_KEY = group_key("v1", "Node")

__all__ = ["CustomizeRequest", "NODE_KEY", "NodeProvisionerSyncRequest", "WORKSPACE_KEY", "WorkspaceObject",
           "WorkspaceStatusShape", "WorkspaceSyncRequest"]


class WorkspaceStatusShape(ObjectStatus):
    workerNodes: Optional[list[StrictStr]] = Field(default=None, description="nodes the workspace runs on")


class WorkspaceObject(KubeObject):
    status: Optional[WorkspaceStatusShape] = Field(default=None, description="status the hooks wrote last")


class WorkspaceSyncRequest(SyncRequest):
    parent: WorkspaceObject = Field(description="the Workspace")


class NodeProvisionerSyncRequest(SyncRequest):
    """The related map holds both groups the customize hook asks for (without the Workspace group a
    200 would drop every claim), and every related Workspace has a namespace (claim names hash it)."""

    @model_validator(mode="after")
    def _both_groups_and_namespaced_workspaces(self) -> "NodeProvisionerSyncRequest":
        problems = [f"related: group {key!r} is missing (the customize hook asks for it)"
                    for key in (WORKSPACE_KEY, NODE_KEY) if key not in self.related]
        for key, ws in (self.related.get(WORKSPACE_KEY) or {}).items():
            if not ws.metadata.namespace:
                problems.append(f"{json_path(('related', WORKSPACE_KEY, key, 'metadata', 'namespace'))}: "
                                f"a Workspace is namespaced; the namespace is missing")
        if problems:
            raise ValueError("; ".join(problems))
        return self
