"""KAITO's admission rules that need no catalog, as CEL for the CRD and as data for the tests.

Each rule sits at a path of the Workspace schema ("" is the root; "[]" steps into list items)
and carries KAITO's message. `hooks.crdgen` writes them as `x-kubernetes-validations`;
`hooks.validation` enforces the same rules in Python (for `kaito validate` and the hooks), and
the tests evaluate every CEL rule with a CEL interpreter against the Python verdict, so a typo in
either fails a test. Rules that read `oldSelf` are transition rules: they run on update only.
"""
from __future__ import annotations

from dataclasses import dataclass

from contract.urlpolicy import METADATA_ADDRESSES, METADATA_HOSTNAMES

DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# registry/repository (lowercase path) with a tag or a digest, e.g. myacr.azurecr.io/data:0.1
IMAGE_REF = "^[^/]+/[^:@]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$"
IMAGE_REPO_LOWERCASE = "^[^/]+/[^:@A-Z]+([:@].*)?$"
HTTP_URL = "^https?://[^/?#@\\s]+([/?#].*)?$"
# Hosts a user-supplied URL must not reach (contract.urlpolicy's admission strength, as a regex):
# loopback, private, link-local, unspecified, any bracketed IPv6 literal, and the metadata hosts.
_METADATA = "|".join(h.replace(".", "\\.") for h in sorted(METADATA_HOSTNAMES) + sorted(
    str(a) for a in METADATA_ADDRESSES if a.version == 4))
INTERNAL_URL = (
    "^https?://(localhost|[^/?#:]*\\.localhost|" + _METADATA + "|0\\.0\\.0\\.0|127\\.[0-9.]+"
    "|10\\.[0-9.]+|169\\.254\\.[0-9.]+|192\\.168\\.[0-9.]+|172\\.(1[6-9]|2[0-9]|3[01])\\.[0-9.]+|\\[[^\\]]*\\])([:/?#].*)?$"
)
STRENGTH_NUMBER = "^([0-9]+\\.?[0-9]*|\\.[0-9]+)$"


@dataclass(frozen=True)
class Rule:
    id: str
    path: str
    cel: str
    message: str

    @property
    def transition(self) -> bool:
        return "oldSelf" in self.cel


RULES: tuple[Rule, ...] = (
    # -- root
    Rule("name-dns-label", "", f"size(self.metadata.name) <= 63 && self.metadata.name.matches('{DNS_LABEL}')",
         "metadata.name must be a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters"),
    Rule("inference-or-tuning", "", "has(self.inference) || has(self.tuning)",
         "Either Inference or Tuning must be specified, not neither"),
    Rule("inference-xor-tuning", "", "!(has(self.inference) && has(self.tuning))",
         "Either Inference or Tuning must be specified, but not both"),
    Rule("tuning-single-node", "", "!has(self.tuning) || self.resource.count <= 1",
         "Tuning does not currently support multinode configurations. Please set the node count to 1. "
         "Future support with DeepSpeed will allow this."),
    Rule("inference-toggle", "", "has(self.inference) == has(oldSelf.inference)",
         "Inference field cannot be toggled once set"),
    Rule("tuning-toggle", "", "has(self.tuning) == has(oldSelf.tuning)",
         "Tuning field cannot be toggled once set"),
    # -- resource
    Rule("count-immutable", "resource.count", "self == oldSelf", "field is immutable"),
    Rule("instance-type-immutable", "resource.instanceType", "self == oldSelf", "field is immutable"),
    Rule("label-selector-immutable", "resource.labelSelector", "self == oldSelf", "field is immutable"),
    Rule("label-selector-in-only", "resource.labelSelector",
         "!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator == 'In')",
         "Only allow matchLabels or 'IN' matchExpression"),
    # -- inference
    Rule("preset-or-template", "inference", "has(self.preset) || has(self.template)",
         "Preset or Template must be specified"),
    Rule("preset-xor-template", "inference", "!(has(self.preset) && has(self.template))",
         "Preset and Template cannot be set at the same time"),
    Rule("template-set-unset", "inference", "has(self.template) == has(oldSelf.template)",
         "field cannot be unset/set if it was set/unset"),
    Rule("inference-preset-immutable", "inference.preset", "self == oldSelf", "field is immutable"),
    Rule("private-needs-image", "inference.preset",
         "self.accessMode != 'private' || (has(self.presetOptions) && has(self.presetOptions.image))",
         "When AccessMode is private, an image must be provided in PresetOptions"),
    Rule("adapters-max", "inference.adapters", "size(self) <= 10",
         "Number of Adapters exceeds the maximum limit, maximum of 10 allowed"),
    Rule("adapters-unique", "inference.adapters",
         "self.all(a, !has(a.source.name) || self.exists_one(b, has(b.source.name) && b.source.name == a.source.name))",
         "Duplicate adapter source name found"),
    Rule("adapter-name-required", "inference.adapters[]", "has(self.source.name) && size(self.source.name) > 0",
         "Name of Adapter field must be specified"),
    Rule("adapter-name-dns", "inference.adapters[]",
         f"!has(self.source.name) || size(self.source.name) == 0 || (size(self.source.name) <= 63 && self.source.name.matches('{DNS_LABEL}'))",
         "Name of Adapter must be a valid DNS label (lowercase letters, digits and '-', at most 63 characters)"),
    Rule("adapter-image-or-volume", "inference.adapters[]", "has(self.source.image) || has(self.source.volumeSource)",
         "Either Image or Volume must be specified for adapter source"),
    Rule("adapter-no-urls", "inference.adapters[]", "!has(self.source.urls)",
         "URLs are not supported as adapter source"),
    Rule("strength-number", "inference.adapters[]", f"!has(self.strength) || self.strength.matches('{STRENGTH_NUMBER}')",
         "Invalid strength value for Adapter: must be a decimal number such as \"0.5\""),
    Rule("strength-range", "inference.adapters[]",
         f"!has(self.strength) || !self.strength.matches('{STRENGTH_NUMBER}') || double(self.strength) <= 1.0",
         "Strength value for Adapter must be between 0 and 1"),
    # -- tuning
    Rule("method-lora-qlora", "tuning", "self.method.matches('^(?i:lora|qlora)$')",
         "invalid value for method: accepted values are lora and qlora"),
    Rule("tuning-preset-immutable", "tuning", "self.preset == oldSelf.preset", "Preset cannot be changed"),
    Rule("method-immutable", "tuning",
         "self.method.matches('^(?i:lora)$') == oldSelf.method.matches('^(?i:lora)$') && "
         "self.method.matches('^(?i:qlora)$') == oldSelf.method.matches('^(?i:qlora)$')",
         "Method cannot be changed"),
    Rule("input-name-immutable", "tuning",
         "has(self.input.name) == has(oldSelf.input.name) && (!has(self.input.name) || self.input.name == oldSelf.input.name)",
         "During tuning Name field cannot be changed once set"),
    Rule("input-image-format", "tuning", f"!has(self.input.image) || self.input.image.matches('{IMAGE_REF}')",
         "Invalid image format, require full input image URL (registry/repository:tag or @sha256:digest)"),
    Rule("input-image-lowercase", "tuning",
         f"!has(self.input.image) || self.input.image.matches('{IMAGE_REPO_LOWERCASE}')",
         "Repository name must be lowercase"),
    Rule("input-exactly-one", "tuning.input",
         "(has(self.urls) ? 1 : 0) + (has(self.volumeSource) ? 1 : 0) + (has(self.image) ? 1 : 0) == 1",
         "Exactly one of URLs, Volume, or Image must be specified"),
    Rule("input-urls-http", "tuning.input", f"!has(self.urls) || self.urls.all(u, u.matches('{HTTP_URL}'))",
         "URLs must use http or https and name a host"),
    Rule("input-urls-external", "tuning.input", f"!has(self.urls) || self.urls.all(u, !u.matches('{INTERNAL_URL}'))",
         "URLs must not point at loopback, private, link-local or metadata addresses"),
    Rule("output-push-secret", "tuning.output", "!has(self.image) || has(self.imagePushSecret)",
         "Must specify imagePushSecret with destination image"),
    Rule("output-exactly-one", "tuning.output", "has(self.image) != has(self.volumeSource)",
         "Exactly one of Volume or Image must be specified"),
)

BY_ID = {rule.id: rule for rule in RULES}
assert len(BY_ID) == len(RULES), "rule ids must be unique"


def message(rule_id: str) -> str:
    return BY_ID[rule_id].message
