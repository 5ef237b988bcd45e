"""`install_error_handlers()`: upstream failures as small JSON errors with the right status."""

from __future__ import annotations

import math
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from .._clients import require_httpx2
from .._errors import PoolClosedError
from .._policy import CircuitOpenError, LimitTimeout
from .._policy._retry import parse_retry_after

__all__ = ["install_error_handlers"]

#: (exception class name, HTTP status, kind) — the same names in httpx and httpx2, whose
#: classes are distinct; looked up along the exception's MRO, so the most specific class
#: wins (PoolTimeout before TimeoutException).
_LIBRARY_MAPPING: tuple[tuple[str, int, str], ...] = (
    ("PoolTimeout", 503, "pool_timeout"),
    ("ConnectTimeout", 504, "connect_timeout"),
    ("TimeoutException", 504, "timeout"),
    ("ConnectError", 502, "connect_error"),
    ("RemoteProtocolError", 502, "protocol_error"),
    ("TransportError", 502, "transport_error"),
    ("HTTPStatusError", 502, "upstream_status"),
)
_OWN_MAPPING: tuple[tuple[type[Exception], int, str], ...] = (
    (LimitTimeout, 503, "limit_timeout"),
    (CircuitOpenError, 503, "circuit_open"),
    (PoolClosedError, 503, "shutting_down"),
)


def _libraries() -> list[Any]:
    """httpx, and httpx2 when installed (`httpool[httpx2]`)."""
    try:
        return [httpx, require_httpx2("install_error_handlers")]
    except ImportError:
        return [httpx]


_MESSAGES = {
    "limit_timeout": "the provider's concurrency or rate limit admitted no request in time; "
    "retry shortly",
    "circuit_open": "the provider is failing; requests to it are paused until a trial one",
    "upstream_rate_limited": "the provider is rate limiting this service; retry later",
    "upstream_unavailable": "the provider is unavailable; retry later",
    "pool_timeout": "every connection to the provider is busy; retry shortly",
    "shutting_down": "the service is shutting down; retry shortly",
    "connect_timeout": "the provider did not accept a connection in time",
    "timeout": "the provider did not answer in time",
    "connect_error": "the provider could not be reached",
    "protocol_error": "the provider broke the HTTP protocol (for example closed early)",
    "transport_error": "the connection to the provider failed",
    "upstream_status": "the provider answered with an error status",
}


def _request_of(exc: Exception) -> Any:
    """The request an httpx (or httpx2) error is about, or None."""
    try:
        return exc.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when unset
        return None


def _provider(exc: Exception) -> str | None:
    if isinstance(exc, PoolClosedError):
        return exc.name
    request = _request_of(exc)
    if request is None:
        return None
    name = request.extensions.get("httpool.provider")
    return name if isinstance(name, str) else None


def _handler(status: int, kind: str, libraries: list[Any]) -> Any:
    status_errors = tuple(lib.HTTPStatusError for lib in libraries)
    request_errors = tuple(lib.RequestError for lib in libraries)

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        body: dict[str, Any] = {
            "provider": _provider(exc),
            "kind": kind,
            "message": _MESSAGES[kind],
        }
        headers: dict[str, str] = {}
        answer_status = status
        if isinstance(exc, status_errors):
            upstream = exc.response.status_code
            body["upstream_status"] = upstream
            if upstream in (429, 503):
                # The provider asks for patience: pass its Retry-After on, as a 503.
                answer_status = 503
                body["kind"] = (
                    "upstream_rate_limited" if upstream == 429 else "upstream_unavailable"
                )
                body["message"] = _MESSAGES[body["kind"]]
                wait = parse_retry_after(exc.response.headers)
                headers["Retry-After"] = str(max(1, math.ceil(wait or 1)))
        elif isinstance(exc, CircuitOpenError):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_in)))
        elif status == 503:
            pool_timeout = None
            if isinstance(exc, request_errors):
                with_timeout = _request_of(exc)
                timeouts = with_timeout.extensions.get("timeout", {}) if with_timeout else {}
                pool_timeout = timeouts.get("pool")
            headers["Retry-After"] = str(max(1, math.ceil(pool_timeout or 1)))
        return JSONResponse({"error": body}, status_code=answer_status, headers=headers)

    return handle


def install_error_handlers(app: Any) -> None:
    """Answer upstream failures that a route lets through with a JSON error.

    `httpx.PoolTimeout` (a provider's limit not reached in time too) → 503 with
    `Retry-After`; an open circuit breaker → 503 with `Retry-After` set to when a trial
    request goes; a closing pool → 503; timeouts → 504; connect and other transport
    errors → 502; `raise_for_status()` errors → 502, except an upstream 429 or 503,
    which becomes a 503 carrying the upstream's `Retry-After`. The body
    is `{"error": {"provider": ..., "kind": ..., "message": ...}}`: no URL, header,
    secret or traceback. httpx2's exceptions are answered alike when httpx2 is installed.
    """
    libraries = _libraries()
    mapping = [
        *_OWN_MAPPING,
        *((getattr(lib, name), status, kind) for lib in libraries
          for name, status, kind in _LIBRARY_MAPPING),
    ]  # fmt: skip
    for exc_class, status, kind in mapping:
        app.add_exception_handler(exc_class, _handler(status, kind, libraries))
