"""Request models for the HTTP API (KAITO's /chat and the OpenAI routes) and their mapping to sampling.

Pydantic at the edge only: handlers turn these into `SamplingParams` for the engine.

Strict like OpenAI's API: no type coercion (`max_tokens: "8"` or `true` is a 400), finite numbers
only, and an unknown field is a 400 "Unrecognized request argument supplied: <field>". Besides
OpenAI's own fields the OpenAI routes accept these vLLM extensions, all implemented by the engine:
`top_k`, `repetition_penalty`, `ignore_eos` (their descriptions say so). OpenAI features this server does not
implement (`logprobs`, `tools`, ...) are accepted only at their "off" value, so a client that sends
the default still works and one that asks for the feature learns it is missing.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.serveargs import ADAPTER_NAME_PATTERN

from .errors import BadRequest, ContextLengthExceeded
from .jsonbody import field_path
from .scheduler import SamplingParams

# Below this a temperature is greedy (vLLM's rule): dividing logits by ~0 overflows to inf and NaN.
_GREEDY_BELOW = 1e-5
_INT64 = {"ge": -(2 ** 63), "le": 2 ** 63 - 1}
# Repetition penalties far outside this range overflow float32 logits (inf/NaN) for every sequence
# in the batch; no useful setting lies outside it.
_PENALTY = {"ge": 0.01, "le": 100.0}
MAX_STOPS = 4


def _null_means_default(schema: dict[str, Any]) -> None:
    """In the published schema, every optional field also accepts null (as in OpenAI's and KAITO's)."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name not in required and not _allows_null(prop):
            schema["properties"][name] = {"anyOf": [prop, {"type": "null"}]}


def _allows_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(_allows_null(p) for p in prop.get("anyOf", ()))


class _Strict(BaseModel):
    # OpenAI's and KAITO's clients send null for "unset": an optional field given null takes its default
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra=_null_means_default)
    # top-level fields a client may send only at their "off" value (features not implemented)
    unsupported: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or cls.model_fields.get(k) is None
                    or cls.model_fields[k].is_required()}
        return data


class TextPart(_Strict):
    type: Literal["text"] = Field(description="only text parts are supported")
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool", "developer"] = Field(description="who said it")
    content: str | list[TextPart] | None = Field(default="", description="text, or a list of text parts")
    name: str | None = Field(default=None, description="accepted and ignored (OpenAI's participant name)")

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(_Strict):
    include_usage: bool = False


class ResponseFormat(_Strict):
    type: Literal["text"] = Field(description="only plain text: JSON modes are not supported")


class _OpenAIBase(_Strict):
    unsupported: ClassVar[tuple[str, ...]] = ("logit_bias", "tools", "tool_choice", "functions", "function_call",
                                              "response_format", "presence_penalty", "frequency_penalty")
    model: str = Field(description="served model name or adapter name")
    max_tokens: int | None = Field(default=None, ge=1, description="new tokens at most")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0, description="0 (or below 1e-5) is greedy")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1, description="vLLM extension: 0 or -1 disables top-k")
    repetition_penalty: float = Field(default=1.0, **_PENALTY, description="vLLM extension")
    n: int = Field(default=1, ge=1, le=16)
    stop: str | list[str] | None = Field(default=None, description=f"up to {MAX_STOPS} non-empty strings")
    seed: int | None = Field(default=None, **_INT64)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=0.0, le=0.0, description="not supported: only 0")
    frequency_penalty: float = Field(default=0.0, ge=0.0, le=0.0, description="not supported: only 0")
    ignore_eos: bool = Field(default=False, description="vLLM extension, for benchmarks")
    user: str | None = Field(default=None, description="accepted and ignored")
    logit_bias: dict[str, float] | None = Field(default=None, max_length=0, description="not supported")
    tools: list[Any] | None = Field(default=None, max_length=0, description="not supported")
    tool_choice: Literal["none"] | None = Field(default=None, description="not supported: only none")
    functions: list[Any] | None = Field(default=None, max_length=0, description="not supported")
    function_call: Literal["none"] | None = Field(default=None, description="not supported: only none")
    response_format: ResponseFormat | None = None

    def sampling(self, max_tokens: int) -> SamplingParams:
        return SamplingParams(max_tokens=max_tokens, temperature=_temperature(self.temperature), top_p=self.top_p,
                              top_k=max(0, self.top_k), repetition_penalty=self.repetition_penalty,
                              stop=_stops(self.stop, "stop"), seed=self.seed, ignore_eos=self.ignore_eos)


class ChatCompletionRequest(_OpenAIBase):
    unsupported: ClassVar[tuple[str, ...]] = (*_OpenAIBase.unsupported, "logprobs", "top_logprobs",
                                              "parallel_tool_calls")
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: Literal[False] | None = Field(default=None, description="not supported")
    top_logprobs: Literal[0] | None = Field(default=None, description="not supported")
    parallel_tool_calls: Literal[False] | None = Field(default=None, description="not supported")


class CompletionRequest(_OpenAIBase):
    unsupported: ClassVar[tuple[str, ...]] = (*_OpenAIBase.unsupported, "logprobs", "best_of", "suffix")
    prompt: str | list[str] = Field(description="one prompt (a list must hold exactly one string)")
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    logprobs: Literal[0] | None = Field(default=None, description="not supported")
    best_of: Literal[1] | None = Field(default=None, description="not supported: only 1")
    suffix: Literal[""] | None = Field(default=None, description="not supported")

    def prompt_text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise BadRequest("prompt: send one prompt per request (a list of exactly one string)",
                                 param="prompt")
            return self.prompt[0]
        return self.prompt


def _temperature(t: float) -> float:
    return 0.0 if t < _GREEDY_BELOW else t


def _stops(stop: str | list[str] | None, param: str) -> tuple[str, ...]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOPS or any(not s for s in stops):
        raise BadRequest(f"{param} must be a non-empty string or a list of at most {MAX_STOPS} non-empty strings",
                         param=param)
    return tuple(stops)


# -- KAITO /chat ------------------------------------------------------------------------------------

class KaitoGenerateKwargs(_Strict):
    """KAITO's generate_kwargs (transformers' generate semantics) with KAITO's defaults."""
    max_length: int = Field(default=200, ge=0, description="prompt + new tokens")
    max_new_tokens: int | None = Field(default=None, ge=0, description="new tokens; overrides max_length")
    min_length: int = Field(default=0, ge=0, le=0, description="only 0 is supported")
    do_sample: bool = True
    early_stopping: bool = Field(default=False, description="ignored: there is no beam search")
    num_beams: int = Field(default=1, ge=1, le=1, description="only 1: no beam search")
    temperature: float = Field(default=1.0, ge=0.0, description="must be > 0 when do_sample")
    top_k: int = Field(default=10, ge=0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    typical_p: float = Field(default=1.0, ge=1.0, le=1.0, description="only 1.0 is supported")
    repetition_penalty: float = Field(default=1.0, **_PENALTY)
    pad_token_id: int | list[int] | None = Field(default=None, description="accepted; the tokenizer's is used")
    eos_token_id: int | list[int] | None = Field(default=None, description="accepted; the tokenizer's is used")
    seed: int | None = Field(default=None, **_INT64)
    stop_strings: str | list[str] | None = Field(default=None, description=f"up to {MAX_STOPS} strings")
    num_return_sequences: int = Field(default=1, ge=1, le=1, description="only 1 is supported")

    @field_validator("stop_strings")
    @classmethod
    def _check_stops(cls, v):
        _stops(v, "generate_kwargs.stop_strings")
        return v


class KaitoChatRequest(_Strict):
    unsupported: ClassVar[tuple[str, ...]] = ("prefix", "handle_long_generation", "messages")
    prompt: str | None = Field(default=None, description="the text to continue (required)")
    return_full_text: bool = Field(default=True, description="prompt + generated text")
    clean_up_tokenization_spaces: bool = False
    generate_kwargs: KaitoGenerateKwargs | None = Field(default_factory=KaitoGenerateKwargs)
    prefix: Literal[""] | None = Field(default=None, description="not supported")
    handle_long_generation: None = Field(default=None, description="not supported")
    messages: None = Field(default=None, description="KAITO's conversational pipelines only: not served")

    def sampling(self, n_prompt: int, context_length: int) -> tuple[SamplingParams, int]:
        """-> (params, max new tokens); explicit lengths beyond the context are a 400, as on /v1."""
        g = self.generate_kwargs or KaitoGenerateKwargs()
        room = context_length - n_prompt
        if g.max_new_tokens is not None:
            max_new = g.max_new_tokens
            if max_new > room:
                raise ContextLengthExceeded(
                    f"prompt ({n_prompt} tokens) + max_new_tokens ({max_new}) exceeds this model's context of "
                    f"{context_length} tokens", param="generate_kwargs.max_new_tokens")
        else:
            if "max_length" in g.model_fields_set and g.max_length > context_length:
                raise ContextLengthExceeded(
                    f"max_length ({g.max_length}) exceeds this model's context of {context_length} tokens",
                    param="generate_kwargs.max_length")
            max_new = min(max(0, g.max_length - n_prompt), room)  # KAITO's default 200 is capped, not refused
        if g.do_sample and g.temperature <= 0:
            raise BadRequest("generate_kwargs.temperature must be > 0 when do_sample is true (or set do_sample "
                             "to false for greedy decoding)", param="generate_kwargs.temperature")
        params = SamplingParams(max_tokens=max(1, max_new),
                                temperature=_temperature(g.temperature) if g.do_sample else 0.0,
                                top_k=g.top_k, top_p=g.top_p, repetition_penalty=g.repetition_penalty,
                                stop=_stops(g.stop_strings, "generate_kwargs.stop_strings"), seed=g.seed)
        return params, max_new


# -- vLLM's runtime adapter API --------------------------------------------------------------------

class LoadLoraAdapterRequest(_Strict):
    lora_name: str = Field(min_length=1, pattern=ADAPTER_NAME_PATTERN, description="the model name clients will use")
    lora_path: str = Field(min_length=1, description="a local directory, oci://REGISTRY/REPO:TAG[@sha256:...] or "
                                                     "hf://REPO[@REV]")


class UnloadLoraAdapterRequest(_Strict):
    lora_name: str = Field(min_length=1, description="a loaded adapter's name")
    lora_int_id: int | None = Field(default=None, description="accepted and ignored (vLLM's numeric id)")


# -- validation errors -> one 400 naming the field --------------------------------------------------

def parse(model: type[_Strict], body: Any) -> Any:
    """Validate a decoded JSON body; a 400 names the most specific offending field."""
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, not {_json_type(body)}", param=None)
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise _bad_request(model, body, e.errors()) from e


def _bad_request(model: type[_Strict], body: dict, errors: list[dict]) -> BadRequest:
    located = [(_locate(body, err), err) for err in errors]
    unknown = [(path, err) for path, err in located if err["type"] == "extra_forbidden"]
    if unknown:  # OpenAI reports these first
        path = unknown[0][0]
        accepted = _accepted(model, path[:-1])
        hint = f" (accepted: {', '.join(accepted)})" if accepted else ""
        return BadRequest(f"Unrecognized request argument supplied: {field_path(path)}{hint}",
                          param=field_path(path))
    path, err = max(located, key=lambda pe: len(pe[0]))  # the deepest: a union's best-matching member
    name = field_path(path)
    if path and path[0] in model.unsupported:
        return BadRequest(f"parameter {path[0]!r} is not supported by this server; omit it or send null",
                          param=path[0])
    return BadRequest(f"{name or 'request body'}: {err['msg']}", param=name or None)


def _locate(body: Any, err: dict) -> tuple:
    """Pydantic's loc, less the union-member tags it inserts ('str', 'list[str]'): the field's path in the body."""
    path, node = [], body
    loc = err["loc"]
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str):
            if part in node:
                path.append(part)
                node = node[part]
            elif err["type"] == "missing" and i == len(loc) - 1:
                path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
    return tuple(path)


def _accepted(model: type[BaseModel], path: tuple) -> list[str]:
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        inner = [a for a in getattr(field.annotation, "__args__", (field.annotation,))
                 if isinstance(a, type) and issubclass(a, BaseModel)] if field else []
        if not inner:
            return []
        model = inner[0]
    return sorted(model.model_fields)


def _json_type(v: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(v), "a number")
