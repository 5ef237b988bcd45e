"""One exchange on one connection: httpx and httpcore requests, errors and responses.

The transport hands a request to a connection here and wraps the answer: httpcore's
exceptions (and `StreamNotProcessed`, an httpcore `RemoteProtocolError`) become httpx's,
and the response body gives its connection back to the pool exactly once when closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import httpcore
import httpx

from ._http11 import HTTP11Connection
from ._records import Conn, Inner

__all__ = [
    "Body",
    "ResponseStream",
    "map_error",
    "pool_key",
    "response_started",
]

_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.ProtocolError: httpx.ProtocolError,
}


def map_error(exc: Exception, request: httpx.Request) -> Exception:
    """The httpx exception for an httpcore one (`exc` itself for any other)."""
    if isinstance(exc, httpx.TransportError):
        return exc
    for cls in type(exc).__mro__:
        kind = _ERRORS.get(cls)
        if kind is not None:
            return kind(str(exc) or cls.__name__, request=request)
    return exc


class Owner(Protocol):
    """What a response stream tells its transport: failures (counted) and the end."""

    def _fail(self, exc: Exception, request: httpx.Request) -> Exception: ...
    def _done(self, conn: Conn) -> None: ...


def response_started(inner: Inner | None) -> bool:
    """Whether response bytes arrived on an HTTP/1.1 connection (so no retry)."""
    return isinstance(inner, HTTP11Connection) and inner.response_started


def pool_key(request: httpx.Request) -> tuple[bytes, bytes, int]:
    """The pool key of `request`: (scheme, host, port)."""
    url = request.url
    scheme = url.raw_scheme
    if scheme != b"http" and scheme != b"https":  # noqa: PLR1714 (faster than a set)
        msg = f"Request URL has an unsupported protocol '{url.scheme}://' (use http or https)"
        raise httpx.UnsupportedProtocol(msg, request=request)
    if not isinstance(request.stream, httpx.AsyncByteStream):
        msg = "PoolTransport needs an async request body (use httpx.AsyncClient)"
        raise TypeError(msg)
    return scheme, url.raw_host, url.port or (443 if scheme == b"https" else 80)


class Body(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


class ResponseStream(httpx.AsyncByteStream):
    """A response body that gives its connection back exactly once when closed."""

    def __init__(self, transport: Owner, conn: Conn, body: Body, request: httpx.Request) -> None:
        self._transport = transport
        self._conn = conn
        self._body = body
        self._chunks: AsyncIterator[bytes] | None = None
        self._request = request
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._chunks = self._body.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        assert self._chunks is not None
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            mapped = self._transport._fail(exc, self._request)
            if mapped is exc:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._body.aclose()
        except Exception as exc:
            mapped = self._transport._fail(exc, self._request)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            self._transport._done(self._conn)
