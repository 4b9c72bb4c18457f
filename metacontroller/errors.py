"""The one error hierarchy of the metacontroller package."""
from __future__ import annotations


class MetacontrollerError(Exception):
    """Base of every error raised by this package."""


class ProtocolError(MetacontrollerError):
    """A hook request or reply does not follow the v2 hook protocol (bad JSON, unknown keys, wrong shape)."""


class HookCallError(MetacontrollerError):
    """A hook call failed: connection error, timeout or a non-200 status."""


class TooManyRequests(HookCallError):
    """The hook answered 429: Metacontroller requeues after `Retry-After` seconds, without backoff."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class ApplyError(MetacontrollerError):
    """A desired child could not be applied (unknown kind, selector mismatch, scope violation)."""
