"""Decoding a request body into JSON at the HTTP edge: media type, size, syntax, nesting, Unicode.

IO-free (bytes in, Python values out) so every limit is testable without a server. The limits,
documented in docs/serving.md next to each other:

- MAX_BODY_BYTES: the body, as sent (413 above it);
- MAX_JSON_DEPTH: objects and arrays nested inside each other (400 above it). The deepest body the
  API itself needs is a chat message's content part (body > messages > message > content > part: 5);
- strict JSON (RFC 8259): `NaN`, `Infinity` and invalid UTF-8 are 400s; so is any string holding a
  lone UTF-16 surrogate (JSON's `"\\udfff"` escape decodes to one, and no tokenizer can encode it).
Every error names where it failed: line and column for syntax, the field path otherwise.
"""
from __future__ import annotations

import json
import re
from typing import Any

from .errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_BODY_BYTES = 1 << 20  # 1 MiB: far beyond any context this server accepts
MAX_JSON_DEPTH = 32

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_media_type(content_type: str | None) -> None:
    """415 unless the body is declared JSON (`application/json`, or a `+json` type)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    got = f"got {content_type!r}" if content_type else "the request has no Content-Type header"
    raise UnsupportedMediaType(f"the request body must be JSON with Content-Type: application/json; {got}")


def check_declared_size(content_length: str | None) -> None:
    if content_length and content_length.isdigit() and int(content_length) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is {content_length} bytes; the limit is {MAX_BODY_BYTES} bytes")


def size_exceeded() -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the limit of {MAX_BODY_BYTES} bytes")


def loads(raw: bytes) -> Any:
    """Parse and check a body; a 400 says where it failed."""
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"request body is not valid UTF-8 (byte {e.start}): {e.reason}") from e
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise BadRequest(f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except RecursionError as e:
        raise BadRequest(f"request body nests objects/arrays deeper than {MAX_JSON_DEPTH} levels") from e
    except ValueError as e:  # e.g. an integer literal beyond Python's digit limit
        raise BadRequest(f"request body is not acceptable JSON: {e}") from e
    _check_tree(value)
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _check_tree(value: Any) -> None:
    """Depth and Unicode, walked iteratively (a recursive walk is what deep nesting attacks)."""
    stack: list[tuple[Any, tuple, int]] = [(value, (), 1)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, str):
            if not v.isascii() and _SURROGATE.search(v):
                _bad_unicode(path)
        elif isinstance(v, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise BadRequest(f"request body nests objects/arrays deeper than {MAX_JSON_DEPTH} levels "
                                 f"(at {field_path(path) or 'the top level'})", param=field_path(path) or None)
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, child in items:
                if isinstance(k, str) and not k.isascii() and _SURROGATE.search(k):
                    _bad_unicode(path)
                stack.append((child, (*path, k), depth + 1))


def _bad_unicode(path: tuple) -> None:
    where = field_path(path)
    raise BadRequest(f"{where or 'request body'}: invalid Unicode (a lone UTF-16 surrogate such as \\udfff); "
                     "send valid UTF-8 text", param=where or None)


def field_path(path: tuple) -> str:
    """('messages', 0, 'content') -> 'messages.0.content': the `param` style of every 400 here."""
    return ".".join(str(p) for p in path)
