"""KAITO's admission rules that need no catalog, as CEL for the CRD and as data for the tests.

Each rule sits at a path of the Workspace schema ("" is the root; "[]" steps into list items)
and carries KAITO's message. `hooks.tools.crdgen` writes them as `x-kubernetes-validations`;
`hooks.core.validation` enforces the same rules in Python (for `kaito validate` and the hooks), and
the tests evaluate every CEL rule with a CEL interpreter against the Python verdict, so a typo in
either fails a test. Rules that read `oldSelf` are transition rules: they run on update only.
Regular expressions go into CEL as raw strings (r'...'): the API server's CEL refuses escapes
such as a backslash-dot in ordinary string literals, which the test interpreter would let through.
"""
from __future__ import annotations

from dataclasses import dataclass

from contract.urlpolicy import METADATA_ADDRESSES, METADATA_HOSTNAMES
from contract.workspace import MAX_WORKSPACE_ADAPTERS

DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Adapter names: KAITO v0.3 takes any case up to 253 characters, v0.4+ DNS-1123 subdomains (dots);
# we take both, so: dot-separated labels of letters (any case), digits and '-'.
_ANY_CASE_LABEL = "[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?"
ADAPTER_NAME = f"^{_ANY_CASE_LABEL}(\\.{_ANY_CASE_LABEL})*$"
ADAPTER_NAME_MAX = 253

# Image references in the grammar of github.com/distribution/reference (what artifacts.reference
# parses and every registry client accepts): [host[:port]/]path[:tag][@sha256:digest]. A first
# component is a host only when it holds '.' or ':' or is 'localhost'. The format pattern takes the
# repository in any case, so that upper case gets its own message (KAITO's "must be lowercase").
_HOST_PART = "[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = (f"(localhost|{_HOST_PART}(\\.{_HOST_PART})+|\\[[0-9a-fA-F:.]+\\])(:[0-9]{{1,5}})?"
         f"|{_HOST_PART}:[0-9]{{1,5}}")
_PATH_PART = "[a-zA-Z0-9]+(([._]|__|-+)[a-zA-Z0-9]+)*"
_PATH_PART_NO_DOT = "[a-zA-Z0-9]+((_|__|-+)[a-zA-Z0-9]+)*"
_IMAGE_NAME = f"(({_HOST})/{_PATH_PART}(/{_PATH_PART})*|{_PATH_PART_NO_DOT}(/{_PATH_PART})+|{_PATH_PART})"
IMAGE_HOST = f"^({_HOST})$"
IMAGE_REF = f"^{_IMAGE_NAME}(:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}(@sha256:[0-9a-f]{{64}})?|@sha256:[0-9a-f]{{64}})$"
# An upper-case letter in the repository (after the host, when there is one; before the tag).
IMAGE_UPPER_REPOSITORY = "^([^/.:]*[A-Z][^/.:]*/|[^/.:]+/[^:@]*[A-Z]|[^/]*[.:][^/]*/[^:@]*[A-Z]|[^/:@]*[A-Z][^/]*$)"
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


# Where an image reference sits: (rule id stem, rule path, CEL guard for "the reference is set and
# used", the reference, field path named in the message, KAITO's word for it). The same four
# places are checked in Python. presetOptions.image is used (and checked) in private mode only.
IMAGE_FIELDS = (
    ("input-image", "tuning.input", "has(self.image)", "self.image", "tuning.input.image", "input"),
    ("output-image", "tuning.output", "has(self.image)", "self.image", "tuning.output.image", "output"),
    ("adapter-image", "inference.adapters[]", "has(self.source.image)", "self.source.image",
     "inference.adapters[].source.image", "adapter"),
    ("preset-image", "inference.preset",
     "self.accessMode == 'private' && has(self.presetOptions) && has(self.presetOptions.image)",
     "self.presetOptions.image", "inference.preset.presetOptions.image", "model"),
)


def image_format_message(field: str, what: str) -> str:
    return (f"Invalid image format, require full {what} image URL ({field}: "
            "[registry/]repository:tag or [registry/]repository@sha256:digest)")


def image_lowercase_message(field: str) -> str:
    return f"Repository name must be lowercase ({field})"


def _image_rules() -> tuple["Rule", ...]:
    out = []
    for stem, path, guard, ref, field, what in IMAGE_FIELDS:
        out.append(Rule(f"{stem}-format", path, f"!({guard}) || {ref}.matches(r'{IMAGE_REF}')",
                        image_format_message(field, what)))
        out.append(Rule(f"{stem}-lowercase", path, f"!({guard}) || !{ref}.matches(r'{IMAGE_UPPER_REPOSITORY}')",
                        image_lowercase_message(field)))
    return tuple(out)


RULES: tuple[Rule, ...] = (
    # -- root
    Rule("name-dns-label", "", f"size(self.metadata.name) <= 63 && self.metadata.name.matches(r'{DNS_LABEL}')",
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
    Rule("adapters-max", "inference.adapters", f"size(self) <= {MAX_WORKSPACE_ADAPTERS}",
         f"Number of Adapters exceeds the maximum limit, maximum of {MAX_WORKSPACE_ADAPTERS} allowed"),
    Rule("adapters-unique", "inference.adapters",
         "self.all(a, !has(a.source.name) || self.exists_one(b, has(b.source.name) && b.source.name == a.source.name))",
         "Duplicate adapter source name found"),
    Rule("adapter-name-required", "inference.adapters[]", "has(self.source.name) && size(self.source.name) > 0",
         "Name of Adapter field must be specified"),
    Rule("adapter-name-valid", "inference.adapters[]",
         f"!has(self.source.name) || size(self.source.name) == 0 || "
         f"(size(self.source.name) <= {ADAPTER_NAME_MAX} && self.source.name.matches(r'{ADAPTER_NAME}'))",
         f"Name of Adapter must be a valid DNS subdomain value: letters of any case, digits, '-' and '.', "
         f"starting and ending with a letter or digit, at most {ADAPTER_NAME_MAX} characters"),
    Rule("adapter-image-or-volume", "inference.adapters[]", "has(self.source.image) || has(self.source.volumeSource)",
         "Either Image or Volume must be specified for adapter source"),
    Rule("adapter-no-urls", "inference.adapters[]", "!has(self.source.urls)",
         "URLs are not supported as adapter source"),
    Rule("strength-number", "inference.adapters[]", f"!has(self.strength) || self.strength.matches(r'{STRENGTH_NUMBER}')",
         "Invalid strength value for Adapter: must be a decimal number such as \"0.5\""),
    Rule("strength-range", "inference.adapters[]",
         f"!has(self.strength) || !self.strength.matches(r'{STRENGTH_NUMBER}') || double(self.strength) <= 1.0",
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
    Rule("input-exactly-one", "tuning.input",
         "(has(self.urls) ? 1 : 0) + (has(self.volumeSource) ? 1 : 0) + (has(self.image) ? 1 : 0) == 1",
         "Exactly one of URLs, Volume, or Image must be specified"),
    Rule("input-urls-http", "tuning.input", f"!has(self.urls) || self.urls.all(u, u.matches(r'{HTTP_URL}'))",
         "URLs must use http or https and name a host"),
    Rule("input-urls-external", "tuning.input", f"!has(self.urls) || self.urls.all(u, !u.matches(r'{INTERNAL_URL}'))",
         "URLs must not point at loopback, private, link-local or metadata addresses"),
    Rule("output-push-secret", "tuning.output", "!has(self.image) || has(self.imagePushSecret)",
         "Must specify imagePushSecret with destination image"),
    Rule("output-exactly-one", "tuning.output", "has(self.image) != has(self.volumeSource)",
         "Exactly one of Volume or Image must be specified"),
) + _image_rules()

BY_ID = {rule.id: rule for rule in RULES}
assert len(BY_ID) == len(RULES), "rule ids must be unique"


def message(rule_id: str) -> str:
    return BY_ID[rule_id].message
