"""What a Workspace comes to once the catalog is consulted: one typed set of facts, derived once.

Both syncs (the Workspace and the NodeProvisioner hooks), `kaito render` and `kaito up -f` read a
Workspace through `workspace_facts`, so the preset, the instance type and its GPU count, the node
count, the adapters with their strengths and the node-claim names have one derivation and one
default each:

- an omitted instance type is `contract.workspace.DEFAULT_INSTANCE_TYPE` (the API model's default);
- an instance type outside the SKU table (KAITO takes unlisted Azure N/D names) gives each node
  the preset's GPU count, or `UNKNOWN_SKU_GPUS` when there is no preset (a custom template);
- an adapter without a strength, or with an empty one, has `contract.serveargs.DEFAULT_STRENGTH`;
- a node claim's disk is the preset's `disk_gib`, or `DEFAULT_DISK_GIB` without a preset;
- a serving pod's load time is the preset's `readiness_timeout_seconds`, or `DEFAULT_READINESS_TIMEOUT_SECONDS`.

The input is a parsed `contract.workspace.Workspace`; call it on a Workspace that validates (an
unknown preset raises `presets.PresetNotFound`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from contract.serveargs import DEFAULT_STRENGTH
from contract.workspace import (
    ADAPTER_REFRESH_ANNOTATION, ENABLE_LB_ANNOTATION, AdapterSpec, PresetSpec, Workspace, claim_name,
)
from presets import Preset, Sku, get_preset, get_sku

__all__ = ["UNKNOWN_SKU_GPUS", "DEFAULT_DISK_GIB", "DEFAULT_READINESS_TIMEOUT_SECONDS", "AdapterFacts", "ClaimFacts", "WorkspaceFacts", "parse_strength",
           "workspace_facts"]

#: GPUs per node for an instance type outside the SKU table when no preset says how many.
UNKNOWN_SKU_GPUS = 1
#: Node OS disk (GiB) a claim asks for when no preset says how much.
DEFAULT_DISK_GIB = 120
#: How long a serving pod may take to answer before its startup probe gives up, without a preset.
DEFAULT_READINESS_TIMEOUT_SECONDS = 600


def parse_strength(raw: Optional[str]) -> float:
    """A Workspace adapter's strength ("0" to "1", a string as in KAITO); unset or empty is the default."""
    return DEFAULT_STRENGTH if raw is None or not raw.strip() else float(raw)


@dataclass(frozen=True)
class AdapterFacts:
    """One `inference.adapters` entry: where it comes from and how strongly it counts."""
    name: str
    strength: float
    image: Optional[str] = None            # an OCI image/artifact reference (no scheme)
    volume_source: Optional[dict[str, Any]] = None  # a Kubernetes VolumeSource holding the adapter
    pull_secrets: tuple[str, ...] = ()

    @property
    def from_volume(self) -> bool:
        return not self.image and self.volume_source is not None

    @classmethod
    def of(cls, spec: AdapterSpec, index: int) -> "AdapterFacts":
        src = spec.source
        return cls(name=src.name or f"adapter-{index}", strength=parse_strength(spec.strength), image=src.image,
                   volume_source=src.volume_source, pull_secrets=tuple(src.image_pull_secrets or ()))


@dataclass(frozen=True, slots=True)
class ClaimFacts:
    """What the NodeProvisioner needs of a Workspace: few objects, so thousands can be kept between syncs."""
    namespace: str
    name: str
    node_count: int
    instance_type: str
    match_labels: dict[str, str]
    preferred_nodes: tuple[str, ...]
    gpus_per_node: int
    claim_names: tuple[str, ...]
    disk_gib: float


@dataclass(frozen=True)
class WorkspaceFacts:
    workspace: Workspace
    namespace: str
    name: str
    preset_spec: Optional[PresetSpec]      # inference.preset or tuning.preset
    preset: Optional[Preset]               # its catalog entry
    instance_type: str
    sku: Optional[Sku]
    gpus_per_node: int
    node_count: int
    match_labels: dict[str, str]
    preferred_nodes: tuple[str, ...]
    adapters: tuple[AdapterFacts, ...]
    claim_names: tuple[str, ...]           # claim i of this Workspace is claim_names[i]
    disk_gib: float
    annotations: dict[str, str]

    @property
    def claims(self) -> ClaimFacts:
        return ClaimFacts(self.namespace, self.name, self.node_count, self.instance_type, self.match_labels,
                          self.preferred_nodes, self.gpus_per_node, self.claim_names, self.disk_gib)

    @property
    def is_tuning(self) -> bool:
        return self.workspace.tuning is not None

    @property
    def model_source(self) -> Optional[str]:
        """Where the weights come from: presetOptions.image in private access mode (KAITO), else the preset's."""
        spec = self.preset_spec
        if spec is not None and spec.access_mode == "private" and spec.preset_options and spec.preset_options.image:
            return spec.preset_options.image
        return self.preset.source if self.preset else None

    @property
    def model_pull_secret(self) -> Optional[str]:
        spec = self.preset_spec
        if spec is None or spec.access_mode != "private" or not spec.preset_options:
            return None
        secrets = spec.preset_options.image_pull_secrets or []
        return secrets[0] if secrets else None

    @property
    def model_access_secret(self) -> Optional[str]:
        options = self.preset_spec.preset_options if self.preset_spec else None
        return options.model_access_secret if options else None

    @property
    def readiness_timeout_seconds(self) -> int:
        return self.preset.readiness_timeout_seconds if self.preset else DEFAULT_READINESS_TIMEOUT_SECONDS

    @property
    def load_balancer(self) -> bool:
        return self.annotations.get(ENABLE_LB_ANNOTATION) == "True"

    @property
    def adapter_refresh(self) -> Optional[str]:
        return self.annotations.get(ADAPTER_REFRESH_ANNOTATION)


def workspace_facts(ws: Workspace) -> WorkspaceFacts:
    meta, res = ws.metadata, ws.resource
    namespace, name = meta.namespace or "", meta.name or ""
    preset_spec = (ws.inference.preset if ws.inference else None) or (ws.tuning.preset if ws.tuning else None)
    preset = get_preset(preset_spec.name) if preset_spec else None
    sku = get_sku(res.instance_type)
    gpus = sku.gpus if sku else (preset.gpu_count if preset else UNKNOWN_SKU_GPUS)
    adapters = tuple(AdapterFacts.of(a, i) for i, a in enumerate((ws.inference.adapters if ws.inference else None) or []))
    return WorkspaceFacts(
        workspace=ws, namespace=namespace, name=name, preset_spec=preset_spec, preset=preset,
        instance_type=res.instance_type, sku=sku, gpus_per_node=gpus, node_count=res.count,
        match_labels=res.label_selector.as_labels(), preferred_nodes=tuple(res.preferred_nodes or ()),
        adapters=adapters, claim_names=tuple(claim_name(namespace, name, i) for i in range(res.count)),
        disk_gib=preset.disk_gib if preset is not None else DEFAULT_DISK_GIB,
        annotations=dict(meta.annotations or {}))
