"""The serving package's one error hierarchy, mapped 1:1 onto HTTP statuses and the OpenAI envelope.

    ServingError (500, "internal_error")
    ├── BadRequest (400, "invalid_request_error")      bad parameter; `param` names it
    │   └── ContextLengthExceeded (400, code "context_length_exceeded")
    ├── Unauthorized (401, "authentication_error")      adapter API without the right bearer token
    ├── RouteNotFound (404, "invalid_request_error")    no such route
    ├── ModelNotFound (404, "not_found_error")           unknown model name
    ├── MethodNotAllowed (405, "invalid_request_error") route exists, method does not
    ├── PayloadTooLarge (413, "invalid_request_error")   body over the limit
    ├── UnsupportedMediaType (415, "invalid_request_error")  body is not application/json
    ├── Overloaded (429, "rate_limit_error")            queue full; carries retry_after seconds
    ├── NotReady (503, "service_unavailable")           model still loading
    └── ModelLoadError (500)                             weights/adapters could not be loaded

`code` follows OpenAI: a string naming the condition ("context_length_exceeded", "model_not_found")
or None; never the HTTP status.

ClientDisconnected is not an answer: the client went away, so nothing is sent (api.py counts it).
"""
from __future__ import annotations

from typing import Any


class ServingError(Exception):
    status = 500
    type = "internal_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ServingError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(BadRequest):
    code = "context_length_exceeded"


class Unauthorized(ServingError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class RouteNotFound(ServingError):
    status = 404
    type = "invalid_request_error"


class ModelNotFound(ServingError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"


class MethodNotAllowed(ServingError):
    status = 405
    type = "invalid_request_error"

    def __init__(self, message: str, *, allow: str = ""):
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow} if self.allow else {}


class PayloadTooLarge(ServingError):
    status = 413
    type = "invalid_request_error"


class UnsupportedMediaType(ServingError):
    status = 415
    type = "invalid_request_error"


class Overloaded(ServingError):
    status = 429
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotReady(ServingError):
    status = 503
    type = "service_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class ModelLoadError(ServingError):
    status = 500
    type = "model_load_error"


class ClientDisconnected(Exception):
    """The client closed the connection before the answer was complete."""
