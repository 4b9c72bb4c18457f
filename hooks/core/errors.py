"""The hooks' errors, and the one place each is mapped to an HTTP status and to a condition.

The tree is drawn in `hooks`' module docstring. `http_status` is what `hooks.core.routes.answer`
answers for an exception; `INVALID_SPEC` is the condition reason both syncs (and `kaito render`)
use for a parent whose spec fails validation.
"""
from __future__ import annotations

from typing import Iterable

from metacontroller.api import RequestError

__all__ = ["HookError", "SettingsError", "SpecInvalid", "WorkspaceInvalid", "RequestError", "INVALID_SPEC",
           "http_status"]

#: The condition reason of a parent whose spec is invalid (its children stay as last applied).
INVALID_SPEC = "InvalidSpec"


class HookError(Exception):
    """Base of what the hooks raise on purpose (RequestError, the protocol's own, stands beside it)."""


class SettingsError(HookError, ValueError):
    """A hook-server setting has a value outside the accepted ones: the server does not start."""


class SpecInvalid(HookError, ValueError):
    """A parent's spec fails validation: a False condition with reason INVALID_SPEC, never an HTTP error."""

    def __init__(self, problems: Iterable[object]):
        self.problems = list(problems)
        super().__init__("; ".join(map(str, self.problems)))


class WorkspaceInvalid(SpecInvalid):
    """A Workspace fails validation; `errors` are its `hooks.core.validation.FieldError`s."""

    @property
    def errors(self) -> list:
        return self.problems


def http_status(exc: BaseException) -> int:
    """The hook server's answer to an exception: the protocol's 400/422 for a malformed request,
    500 for anything else (Metacontroller changes nothing on a non-200, where a 200 that left a
    child out would delete it)."""
    if isinstance(exc, RequestError):
        return exc.status
    return 500
