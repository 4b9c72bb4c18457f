"""Request models for the HTTP API (KAITO's /chat and the OpenAI routes) and their mapping to sampling.

Pydantic at the edge only: handlers turn these into `SamplingParams` for the engine.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import BadRequest
from .scheduler import SamplingParams


class _Lenient(BaseModel):
    # OpenAI clients send fields we do not use (user, metadata...): ignore those, but reject
    # features we cannot honour (see _UNSUPPORTED) instead of silently dropping them.
    model_config = ConfigDict(extra="allow")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"] = Field(description="who said it")
    content: str | list[dict[str, Any]] | None = Field(default="", description="text, or a list of text parts")

    def text(self) -> str:
        if isinstance(self.content, list):
            parts = []
            for p in self.content:
                if p.get("type") != "text":
                    raise BadRequest(f"content part type {p.get('type')!r} is not supported; accepted: text",
                                     param="messages")
                parts.append(p.get("text", ""))
            return "".join(parts)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class _OpenAIBase(_Lenient):
    model: str = Field(description="served model name or adapter name")
    max_tokens: int | None = Field(default=None, ge=1, description="new tokens at most")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0, description="extension: 0 disables top-k")
    repetition_penalty: float = Field(default=1.0, gt=0.0, description="extension")
    n: int = Field(default=1, ge=1, le=16)
    stop: str | list[str] | None = Field(default=None)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    ignore_eos: bool = Field(default=False, description="extension, for benchmarks")

    def sampling(self, max_tokens: int) -> SamplingParams:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise BadRequest("stop must be a non-empty string or a list of at most 4 non-empty strings",
                             param="stop")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise BadRequest(f"{name} is not supported (use repetition_penalty); send 0", param=name)
        return SamplingParams(max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p,
                              top_k=self.top_k, repetition_penalty=self.repetition_penalty, stop=tuple(stops),
                              seed=self.seed, ignore_eos=self.ignore_eos)


_UNSUPPORTED = ("logprobs", "top_logprobs", "logit_bias", "tools", "functions", "best_of", "suffix")


def _reject_unsupported(body: dict) -> None:
    for k in _UNSUPPORTED:
        if body.get(k) not in (None, False, [], {}):
            raise BadRequest(f"parameter {k!r} is not supported by this server", param=k)
    rf = body.get("response_format")
    if rf not in (None, {"type": "text"}):
        raise BadRequest("response_format: only {'type': 'text'} is supported", param="response_format")


class ChatCompletionRequest(_OpenAIBase):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_OpenAIBase):
    prompt: str | list[str] = Field(description="one prompt (a list must hold exactly one string)")
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False

    def prompt_text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise BadRequest("prompt: send one prompt per request (a list of exactly one string)",
                                 param="prompt")
            return self.prompt[0]
        return self.prompt


# -- KAITO /chat ------------------------------------------------------------------------------------

KAITO_GENERATE_DEFAULTS: dict[str, Any] = {
    "max_length": 200, "min_length": 0, "do_sample": True, "early_stopping": False, "num_beams": 1,
    "temperature": 1.0, "top_k": 10, "top_p": 1.0, "typical_p": 1.0, "repetition_penalty": 1.0,
}
_KAITO_ACCEPTED = set(KAITO_GENERATE_DEFAULTS) | {"max_new_tokens", "pad_token_id", "eos_token_id", "seed",
                                                 "stop_strings", "num_return_sequences"}


class KaitoChatRequest(_Lenient):
    prompt: str | None = None
    return_full_text: bool = True
    clean_up_tokenization_spaces: bool = False
    prefix: str | None = None
    handle_long_generation: str | None = None
    generate_kwargs: dict[str, Any] = Field(default_factory=dict)


def kaito_sampling(kw: dict[str, Any], n_prompt: int) -> tuple[SamplingParams, int]:
    """KAITO's generate_kwargs (HF generate semantics) -> (params, max new tokens)."""
    unknown = set(kw) - _KAITO_ACCEPTED
    if unknown:
        raise BadRequest(f"generate_kwargs: unsupported key(s) {sorted(unknown)}; accepted: "
                         f"{sorted(_KAITO_ACCEPTED)}", param=f"generate_kwargs.{sorted(unknown)[0]}")
    g = {**KAITO_GENERATE_DEFAULTS, **kw}

    def num(name: str, typ, lo=None, hi=None, lo_open=False):
        v = g[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (typ is int and not float(v).is_integer()):
            raise BadRequest(f"generate_kwargs.{name} must be a {typ.__name__}, got {v!r}",
                             param=f"generate_kwargs.{name}")
        v = typ(v)
        if (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
            raise BadRequest(f"generate_kwargs.{name}={v} is out of range", param=f"generate_kwargs.{name}")
        return v

    if num("num_beams", int, 1) != 1:
        raise BadRequest("generate_kwargs.num_beams: only 1 (no beam search) is supported",
                         param="generate_kwargs.num_beams")
    if g.get("num_return_sequences", 1) != 1:
        raise BadRequest("generate_kwargs.num_return_sequences: only 1 is supported",
                         param="generate_kwargs.num_return_sequences")
    if g.get("max_new_tokens") is not None:
        max_new = num("max_new_tokens", int, 0)
    else:
        max_new = max(0, num("max_length", int, 0) - n_prompt)  # max_length counts the prompt
    do_sample = g["do_sample"]
    if not isinstance(do_sample, bool):
        raise BadRequest("generate_kwargs.do_sample must be true or false", param="generate_kwargs.do_sample")
    temperature = num("temperature", float, 0.0, lo_open=True) if do_sample else 0.0
    stops = g.get("stop_strings") or ()
    stops = (stops,) if isinstance(stops, str) else tuple(stops)
    seed = g.get("seed")
    params = SamplingParams(max_tokens=max(1, max_new), temperature=temperature,
                            top_k=num("top_k", int, 0), top_p=num("top_p", float, 0.0, 1.0, lo_open=True),
                            repetition_penalty=num("repetition_penalty", float, 0.0, lo_open=True),
                            stop=stops, seed=int(seed) if seed is not None else None)
    return params, max_new


def parse(model: type[BaseModel], body: Any) -> Any:
    """Validate a decoded JSON body; a 400 names the first offending field."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", param=None)
    if model is not KaitoChatRequest:
        _reject_unsupported(body)
    try:
        return model.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise BadRequest(f"{loc}: {err['msg']}", param=loc or None) from e
