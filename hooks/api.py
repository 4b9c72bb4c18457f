"""The Workspace and NodeProvisioner APIs (`kaito.sh/v1alpha1`), as KAITO users write them.

These models are the single source of truth: the hooks parse with them, `kaito validate` checks
with them, and `hooks.crdgen` turns them (plus `hooks.rules`) into the CRDs' OpenAPI schemas.
Spec fields are top-level (`resource`, `inference`, `tuning`), exactly as in KAITO.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "kaito.sh"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Free-form Kubernetes structures (PodTemplateSpec, VolumeSource) that we pass through untouched;
# the CRD marks them x-kubernetes-preserve-unknown-fields, as KAITO does.
KubeObject = dict[str, Any]
Url = Annotated[str, Field(max_length=2048)]
Name = Annotated[str, Field(max_length=253)]
# A registry/repository:tag[@digest] reference; the bound keeps the CRD's CEL cost estimable.
ImageRef = Annotated[str, Field(max_length=512)]


class _Spec(BaseModel):
    """User-written spec: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class ObjectMeta(BaseModel):
    # The API server adds many fields (uid, managedFields, ...): metadata is not ours to police.
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None
    uid: str | None = None


class LabelSelectorRequirement(_Spec):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(_Spec):
    match_labels: dict[str, str] | None = Field(default=None, description="nodes must carry all these labels")
    match_expressions: list[LabelSelectorRequirement] | None = None


class ResourceSpec(_Spec):
    count: int = Field(default=1, ge=1, description="number of GPU nodes")
    instance_type: str = Field(
        default="Standard_NC24ads_A100_v4",
        description="GPU instance type (VM size) for new nodes, e.g. Standard_NC6s_v3 or g5.xlarge",
    )
    label_selector: LabelSelector = Field(description="labels that select (and are put on) the GPU nodes")
    preferred_nodes: list[str] | None = Field(default=None, description="existing nodes to use first")


class PresetOptions(_Spec):
    image: ImageRef | None = Field(default=None, description="image holding the weights (private access mode)")
    image_pull_secrets: list[str] | None = None
    model_access_secret: str | None = Field(
        default=None, description="Secret with key HF_TOKEN for gated models downloaded at runtime"
    )


class PresetSpec(_Spec):
    name: Name = Field(description="preset model name from the catalog, e.g. phi-3-mini-4k-instruct")
    access_mode: Literal["public", "private"] = Field(default="public")
    preset_options: PresetOptions | None = None


class DataSource(_Spec):
    name: Name | None = Field(default=None, description="name of the source (container and directory name)")
    urls: list[Url] | None = Field(default=None, max_length=100, description="http(s) URLs to download")
    volume_source: KubeObject | None = Field(default=None, description="a Kubernetes VolumeSource")
    image: ImageRef | None = Field(default=None, description="image or OCI artifact holding the data under /data")
    image_pull_secrets: list[str] | None = None


class DataDestination(_Spec):
    volume_source: KubeObject | None = Field(default=None, description="a Kubernetes VolumeSource")
    image: ImageRef | None = Field(default=None, description="image reference the result is pushed to")
    image_push_secret: str | None = Field(default=None, description="Secret of type dockerconfigjson for the push")


class AdapterSpec(_Spec):
    source: DataSource = Field(description="where the LoRA adapter comes from")
    strength: str | None = Field(default=None, max_length=32, description='weight of the adapter, "0" to "1" (default "1.0")')


class InferenceSpec(_Spec):
    preset: PresetSpec | None = None
    template: KubeObject | None = Field(default=None, description="a custom PodTemplateSpec instead of a preset")
    config: str | None = Field(default=None, description="ConfigMap with key inference_config.yaml")
    # maxItems lets the API server bound the cost of the CEL rules; the limit itself is rule adapters-max.
    adapters: list[AdapterSpec] | None = Field(default=None, json_schema_extra={"maxItems": 10})


class TuningSpec(_Spec):
    preset: PresetSpec
    method: str = Field(default="lora", max_length=16, description="lora or qlora")
    config: str | None = Field(default=None, description="ConfigMap with key training_config.yaml")
    input: DataSource
    output: DataDestination


class Condition(_Spec):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class WorkspaceStatus(_Spec):
    worker_nodes: list[str] | None = None
    conditions: list[Condition] | None = None
    # Metacontroller writes it on every status update; undeclared, the API server would prune it.
    observed_generation: int | None = None


class Workspace(_Spec):
    api_version: Literal["kaito.sh/v1alpha1"] = API_VERSION
    kind: Literal["Workspace"] = "Workspace"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    resource: ResourceSpec
    inference: InferenceSpec | None = None
    tuning: TuningSpec | None = None
    status: WorkspaceStatus | None = None


class NodeClassRef(_Spec):
    group: str = "karpenter.azure.com"
    kind: str = "AKSNodeClass"
    name: str = "default"


class NodeProvisionerSpec(_Spec):
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


class WorkspaceClaims(_Spec):
    namespace: str
    name: str
    claims: int = Field(ge=0)
    ready: int = Field(ge=0)
    invalid: str | None = Field(default=None, description="why the Workspace's spec is invalid; its claims are kept "
                                                          "as last applied until it is fixed")


class NodeProvisionerStatus(_Spec):
    claim_api: Literal["machine", "nodeclaim"] | None = Field(
        default=None, description="the claim API this installation emits (set by the deploy overlay)")
    workspaces: list[WorkspaceClaims] | None = None
    conditions: list[Condition] | None = None
    observed_generation: int | None = None


class NodeProvisioner(_Spec):
    api_version: Literal["kaito.sh/v1alpha1"] = API_VERSION
    kind: Literal["NodeProvisioner"] = "NodeProvisioner"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: NodeProvisionerSpec = Field(default_factory=NodeProvisionerSpec)
    status: NodeProvisionerStatus | None = None
