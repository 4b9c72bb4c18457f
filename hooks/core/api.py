"""The NodeProvisioner API (`kaito.sh/v1alpha1`, cluster-scoped): the hooks' own parent of every node claim.

The Workspace API it provisions for lives in `contract.workspace`; `hooks.tools.crdgen` turns both
(plus `hooks.core.rules`) into the CRDs' OpenAPI schemas.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from contract.workspace import API_VERSION, Condition, LabelSelector, ObjectMeta, SpecModel

__all__ = ["NodeClassRef", "NodeProvisionerSpec", "WorkspaceClaims", "NodeProvisionerStatus", "NodeProvisioner"]


class NodeClassRef(SpecModel):
    group: str = "karpenter.azure.com"
    kind: str = "AKSNodeClass"
    name: str = "default"


class NodeProvisionerSpec(SpecModel):
    claim_api: Literal["machine", "nodeclaim"] | None = Field(
        default=None,
        description="optional check only: the deploy overlay decides the claim API (machine = karpenter.sh/v1alpha5 "
                    "Machine, nodeclaim = karpenter.sh/v1 NodeClaim); a different value here is reported as a False "
                    "ClaimApi condition",
    )
    node_class_ref: NodeClassRef = Field(default_factory=NodeClassRef, description="NodeClaim only")
    node_pool: str = Field(default="kaito", description="value of karpenter.sh/nodepool on NodeClaims")
    provisioner_name: str = Field(default="default", description="value of karpenter.sh/provisioner-name on Machines")
    workspace_selector: LabelSelector | None = Field(
        default=None, description="only provision for Workspaces with these labels (sharding)"
    )


class WorkspaceClaims(SpecModel):
    namespace: str
    name: str
    claims: int = Field(ge=0)
    ready: int = Field(ge=0)
    invalid: str | None = Field(default=None, description="why the Workspace's spec is invalid; its claims are kept "
                                                          "as last applied until it is fixed")


class NodeProvisionerStatus(SpecModel):
    claim_api: Literal["machine", "nodeclaim"] | None = Field(
        default=None, description="the claim API this installation emits (set by the deploy overlay)")
    workspaces: list[WorkspaceClaims] | None = None
    conditions: list[Condition] | None = None
    observed_generation: int | None = None


class NodeProvisioner(SpecModel):
    api_version: Literal["kaito.sh/v1alpha1"] = API_VERSION
    kind: Literal["NodeProvisioner"] = "NodeProvisioner"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: NodeProvisionerSpec = Field(default_factory=NodeProvisionerSpec)
    status: NodeProvisionerStatus | None = None
