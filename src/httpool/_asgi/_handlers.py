"""`install_error_handlers()`: upstream failures as small JSON errors with the right status."""

from __future__ import annotations

import math
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from .._errors import PoolClosedError

__all__ = ["install_error_handlers"]

#: (exception class, HTTP status, kind) — looked up along the exception's MRO, so the
#: most specific class wins (PoolTimeout before TimeoutException).
_MAPPING: tuple[tuple[type[Exception], int, str], ...] = (
    (httpx.PoolTimeout, 503, "pool_timeout"),
    (PoolClosedError, 503, "shutting_down"),
    (httpx.ConnectTimeout, 504, "connect_timeout"),
    (httpx.TimeoutException, 504, "timeout"),
    (httpx.ConnectError, 502, "connect_error"),
    (httpx.RemoteProtocolError, 502, "protocol_error"),
    (httpx.TransportError, 502, "transport_error"),
    (httpx.HTTPStatusError, 502, "upstream_status"),
)
_MESSAGES = {
    "pool_timeout": "every connection to the provider is busy; retry shortly",
    "shutting_down": "the service is shutting down; retry shortly",
    "connect_timeout": "the provider did not accept a connection in time",
    "timeout": "the provider did not answer in time",
    "connect_error": "the provider could not be reached",
    "protocol_error": "the provider broke the HTTP protocol (for example closed early)",
    "transport_error": "the connection to the provider failed",
    "upstream_status": "the provider answered with an error status",
}


def _provider(exc: Exception) -> str | None:
    if isinstance(exc, PoolClosedError):
        return exc.name
    try:
        request = exc.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when unset
        return None
    name = request.extensions.get("httpool.provider")
    return name if isinstance(name, str) else None


def _handler(status: int, kind: str) -> Any:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        body: dict[str, Any] = {
            "provider": _provider(exc),
            "kind": kind,
            "message": _MESSAGES[kind],
        }
        headers: dict[str, str] = {}
        if isinstance(exc, httpx.HTTPStatusError):
            body["upstream_status"] = exc.response.status_code
        if status == 503:
            pool_timeout = None
            if isinstance(exc, httpx.RequestError):
                with_timeout = getattr(exc, "_request", None)
                timeouts = with_timeout.extensions.get("timeout", {}) if with_timeout else {}
                pool_timeout = timeouts.get("pool")
            headers["Retry-After"] = str(max(1, math.ceil(pool_timeout or 1)))
        return JSONResponse({"error": body}, status_code=status, headers=headers)

    return handle


def install_error_handlers(app: Any) -> None:
    """Answer upstream failures that a route lets through with a JSON error.

    `httpx.PoolTimeout` → 503 with `Retry-After`; a closing pool → 503; timeouts → 504;
    connect and other transport errors, and `raise_for_status()` errors → 502. The body
    is `{"error": {"provider": ..., "kind": ..., "message": ...}}`: no URL, header,
    secret or traceback.
    """
    for exc_class, status, kind in _MAPPING:
        app.add_exception_handler(exc_class, _handler(status, kind))
