"""Typed shapes of the catalog data: presets, GPU instance types, the tiny model's recipe."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

GIB = 1024**3


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TinySpec(_Frozen):
    """Recipe for a small random model that is built locally instead of downloaded."""

    architecture: Literal["phi3", "llama"] = Field(description="transformers model family to instantiate")
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    vocab_size: int = Field(gt=0, description="target size of the locally trained BPE vocabulary")
    seed: int = Field(default=0, description="makes weights and tokenizer reproducible")


class Preset(_Frozen):
    name: str
    hf_repo: str | None = Field(default=None, description="Hugging Face repo id; None for locally built models")
    revision: str | None = Field(default=None, description="pinned commit of hf_repo")
    architecture: str = Field(description="transformers architecture class")
    parameters: int = Field(ge=0)
    weight_bytes: int = Field(ge=0, description="size of the weights in their dtype")
    dtype: Literal["bfloat16", "float16", "float32"]
    context_length: int = Field(gt=0, description="maximum tokens (prompt + generated)")
    gpu_count: int = Field(ge=0, description="GPUs the model needs in total")
    total_gpu_memory_gib: float = Field(ge=0)
    per_gpu_memory_gib: float = Field(ge=0, description="0 = no per-GPU constraint")
    disk_gib: float = Field(ge=0, description="node OS disk the claim asks for")
    readiness_timeout_seconds: int = Field(gt=0)
    tunable: bool
    tuning_total_gpu_memory_gib: float | None = None
    tuning_per_gpu_memory_gib: float | None = None
    lora_target_modules: tuple[str, ...] = ()
    chat_template: str | None = Field(default=None, description="name of a template in presets/templates")
    download_auth_required: bool = Field(
        description="KAITO's downloadAuthRequired: the weights need an HF_TOKEN (presetOptions.modelAccessSecret)")
    trust_remote_code: bool
    access_mode: Literal["public", "private"] = Field(
        description="private: KAITO v0.3's private presets, served only from the user's presetOptions.image")
    deprecated: bool = False
    derived: str = Field(default="", description="how numbers KAITO does not publish were derived")
    source_override: str | None = Field(default=None, alias="source", description="oci:// mirror of the weights")
    tiny: TinySpec | None = None

    @property
    def source(self) -> str | None:
        """Where the weights come from: an explicit mirror, else the pinned Hugging Face revision."""
        if self.source_override:
            return self.source_override
        if self.hf_repo:
            return f"hf://{self.hf_repo}@{self.revision}" if self.revision else f"hf://{self.hf_repo}"
        return None

    @property
    def gated(self) -> bool:
        """Public access needs a token: the one catalog field KAITO calls downloadAuthRequired."""
        return self.download_auth_required

    @property
    def weight_gib(self) -> float:
        return self.weight_bytes / GIB


class Sku(_Frozen):
    name: str
    cloud: Literal["azure", "aws"]
    gpus: int = Field(gt=0, description="GPUs per node")
    memory_gib: float = Field(gt=0, description="total GPU memory per node")
    model: str = Field(description="GPU model")

    @property
    def memory_per_gpu_gib(self) -> float:
        return self.memory_gib / self.gpus
