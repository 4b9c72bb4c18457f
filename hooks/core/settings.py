"""Hook-server settings, read from the environment once per process (set by each deploy overlay)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from hooks.core.errors import SettingsError
from metacontroller.api import group_key

DEFAULT_RUNTIME_IMAGE = "ghcr.io/kaito-ray/runtime:0.1.0"
#: The claim API when KAITO_CLAIM_API is unset. Each deploy overlay sets KAITO_CLAIM_API together
#: with the NodeProvisioner controller's child kind: that overlay setting is the one source of truth.
DEFAULT_CLAIM_API = "nodeclaim"


@dataclass(frozen=True)
class ClaimApi:
    """One Karpenter node-claim API: what the hooks emit and ask Metacontroller for."""
    name: str
    api_version: str
    kind: str
    resource: str

    @property
    def map_key(self) -> str:
        return group_key(self.api_version, self.kind)


CLAIM_APIS = {
    "machine": ClaimApi("machine", "karpenter.sh/v1alpha5", "Machine", "machines"),
    "nodeclaim": ClaimApi("nodeclaim", "karpenter.sh/v1", "NodeClaim", "nodeclaims"),
}


@dataclass(frozen=True)
class Settings:
    claim_api: ClaimApi = CLAIM_APIS[DEFAULT_CLAIM_API]
    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    #: how soon Metacontroller should call again while something is still converging
    pending_resync_seconds: float = 15.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        api = env.get("KAITO_CLAIM_API", DEFAULT_CLAIM_API).strip().lower()
        if api not in CLAIM_APIS:
            raise SettingsError(f"KAITO_CLAIM_API={api!r}; accepted: {', '.join(CLAIM_APIS)}")
        image = env.get("KAITO_RUNTIME_IMAGE", DEFAULT_RUNTIME_IMAGE).strip() or DEFAULT_RUNTIME_IMAGE
        return cls(claim_api=CLAIM_APIS[api], runtime_image=image)
