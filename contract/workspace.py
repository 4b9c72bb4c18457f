"""The Workspace API (`kaito.sh/v1alpha1`), as KAITO users write it.

These models are the single source of truth: the hooks parse with them, `kaito validate` checks
with them, `kaito up -f` reads a Workspace file with them (through `presets.facts`), and
`hooks.tools.crdgen` turns them (plus `hooks.core.rules`) into the CRD's OpenAPI schema. Spec fields are
top-level (`resource`, `inference`, `tuning`), exactly as in KAITO. The annotations a Workspace
may carry and the node-claim names it is given are facts of this API too.
"""
from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "GROUP", "VERSION", "API_VERSION", "DEFAULT_INSTANCE_TYPE", "ENABLE_LB_ANNOTATION", "ADAPTER_REFRESH_ANNOTATION",
    "MAX_WORKSPACE_ADAPTERS", "KubeObject", "Url", "Name", "ImageRef", "SpecModel", "ObjectMeta",
    "LabelSelectorRequirement", "LabelSelector", "ResourceSpec", "PresetOptions", "PresetSpec", "DataSource",
    "DataDestination", "AdapterSpec", "InferenceSpec", "TuningSpec", "Condition", "WorkspaceStatus", "Workspace",
    "claim_name", "yaml_documents", "one_workspace",
]

GROUP = "kaito.sh"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
#: The instance type of a Workspace that names none.
DEFAULT_INSTANCE_TYPE = "Standard_NC24ads_A100_v4"
#: KAITO's annotation: "True" makes the Workspace Service a LoadBalancer.
ENABLE_LB_ANNOTATION = "kaito.sh/enablelb"
#: An opaque token; changing it asks the endpoint to re-resolve its adapter tags now (ServeArgs.adapter_refresh).
ADAPTER_REFRESH_ANNOTATION = "kaito.sh/adapter-refresh"
#: KAITO's limit on inference.adapters (its webhook refuses more; kept for compatibility).
MAX_WORKSPACE_ADAPTERS = 10

# Free-form Kubernetes structures (PodTemplateSpec, VolumeSource) that we pass through untouched;
# the CRD marks them x-kubernetes-preserve-unknown-fields, as KAITO does.
KubeObject = dict[str, Any]
Url = Annotated[str, Field(max_length=2048)]
Name = Annotated[str, Field(max_length=253)]
# A registry/repository:tag[@digest] reference; the bound keeps the CRD's CEL cost estimable.
ImageRef = Annotated[str, Field(max_length=512)]


class SpecModel(BaseModel):
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


class LabelSelectorRequirement(SpecModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(SpecModel):
    match_labels: dict[str, str] | None = Field(default=None, description="nodes must carry all these labels")
    match_expressions: list[LabelSelectorRequirement] | None = None

    def as_labels(self) -> dict[str, str]:
        """The labels the selector stands for, as KAITO's LabelSelectorAsMap reads it: matchLabels
        plus each `In` expression's (first) value. Claims carry them; affinity and node checks use them."""
        out = dict(self.match_labels or {})
        for expr in self.match_expressions or []:
            if expr.operator == "In" and expr.values:
                out.setdefault(expr.key, expr.values[0])
        return out


class ResourceSpec(SpecModel):
    count: int = Field(default=1, ge=1, description="number of GPU nodes")
    instance_type: str = Field(
        default=DEFAULT_INSTANCE_TYPE,
        description="GPU instance type (VM size) for new nodes, e.g. Standard_NC6s_v3 or g5.xlarge",
    )
    label_selector: LabelSelector = Field(description="labels that select (and are put on) the GPU nodes")
    preferred_nodes: list[str] | None = Field(default=None, description="existing nodes to use first")


class PresetOptions(SpecModel):
    image: ImageRef | None = Field(default=None, description="image holding the weights (private access mode)")
    image_pull_secrets: list[str] | None = None
    model_access_secret: str | None = Field(
        default=None, description="Secret with key HF_TOKEN for gated models downloaded at runtime"
    )


class PresetSpec(SpecModel):
    name: Name = Field(description="preset model name from the catalog, e.g. phi-3-mini-4k-instruct")
    access_mode: Literal["public", "private"] = Field(default="public")
    preset_options: PresetOptions | None = None


class DataSource(SpecModel):
    name: Name | None = Field(default=None, description="name of the source (container and directory name)")
    urls: list[Url] | None = Field(default=None, max_length=100, description="http(s) URLs to download")
    volume_source: KubeObject | None = Field(default=None, description="a Kubernetes VolumeSource")
    image: ImageRef | None = Field(default=None, description="image or OCI artifact holding the data under /data")
    image_pull_secrets: list[str] | None = None


class DataDestination(SpecModel):
    volume_source: KubeObject | None = Field(default=None, description="a Kubernetes VolumeSource")
    image: ImageRef | None = Field(default=None, description="image reference the result is pushed to")
    image_push_secret: str | None = Field(default=None, description="Secret of type dockerconfigjson for the push")


class AdapterSpec(SpecModel):
    source: DataSource = Field(description="where the LoRA adapter comes from")
    strength: str | None = Field(default=None, max_length=32, description='weight of the adapter, "0" to "1" (default "1.0")')


class InferenceSpec(SpecModel):
    preset: PresetSpec | None = None
    template: KubeObject | None = Field(default=None, description="a custom PodTemplateSpec instead of a preset")
    config: str | None = Field(default=None, description="ConfigMap with key inference_config.yaml")
    # maxItems lets the API server bound the cost of the CEL rules; the limit itself is rule adapters-max.
    adapters: list[AdapterSpec] | None = Field(default=None, json_schema_extra={"maxItems": MAX_WORKSPACE_ADAPTERS})


class TuningSpec(SpecModel):
    preset: PresetSpec
    method: str = Field(default="lora", max_length=16, description="lora or qlora")
    config: str | None = Field(default=None, description="ConfigMap with key training_config.yaml")
    input: DataSource
    output: DataDestination


class Condition(SpecModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class WorkspaceStatus(SpecModel):
    worker_nodes: list[str] | None = None
    conditions: list[Condition] | None = None
    # Metacontroller writes it on every status update; undeclared, the API server would prune it.
    observed_generation: int | None = None


class Workspace(SpecModel):
    api_version: Literal["kaito.sh/v1alpha1"] = API_VERSION
    kind: Literal["Workspace"] = "Workspace"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    resource: ResourceSpec
    inference: InferenceSpec | None = None
    tuning: TuningSpec | None = None
    status: WorkspaceStatus | None = None


def claim_name(namespace: str, name: str, index: int) -> str:
    """The index-th node claim of a Workspace: 'ws' + 9 hex digits, a valid AKS agent-pool name
    (<= 11 chars, lowercase, starts with a letter), the same for the same Workspace every time."""
    return "ws" + hashlib.sha256(f"{namespace}/{name}/{index}".encode()).hexdigest()[:9]


def yaml_documents(text: str) -> list[Any]:
    """The non-empty YAML documents of a file, or ValueError naming the line and column of a syntax error."""
    import yaml

    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"YAML syntax error{where}: {getattr(exc, 'problem', None) or exc}") from exc


def one_workspace(text: str) -> dict[str, Any]:
    """The file's single kaito.sh/v1alpha1 Workspace with a name (what `kaito render` and `kaito up -f`
    take), or ValueError saying what is wrong."""
    workspaces = [d for d in yaml_documents(text) if isinstance(d, dict) and d.get("kind") == "Workspace"]
    if len(workspaces) != 1:
        raise ValueError(f"must hold exactly one Workspace (kind: Workspace), found {len(workspaces)}")
    ws = workspaces[0]
    if ws.get("apiVersion") != API_VERSION:
        raise ValueError(f"apiVersion must be {API_VERSION}, got {ws.get('apiVersion')!r}")
    name = (ws.get("metadata") or {}).get("name") if isinstance(ws.get("metadata"), dict) else None
    if not isinstance(name, str) or not name:
        raise ValueError("metadata.name must be set")
    return ws
