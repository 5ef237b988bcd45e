"""`PoolTransport`: httpool's httpx transport, an O(1) connection pool on httpcore."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import httpcore
import httpx

from ._connections import Conn, Inner, Pool, TransportClosedError
from ._http11 import HTTPTOOLS, AsyncioBackend, HTTP11Connection

__all__ = ["PoolTransport"]

logger = logging.getLogger("httpool.transport")

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
MAX_ATTEMPTS = 12  # one stale-connection retry, the rest for streams refused by GOAWAY

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

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


def _loop_message(kind: str) -> str:
    return (
        f"this httpool client belongs to {kind} (for example one started by a second "
        "TestClient or by asyncio.run); get the client from the running app's pool "
        "(httpool.client(name) in a route, or pool.client(name)) instead of keeping it "
        "across event loops"
    )


class PoolTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` whose connection pool hands out connections in O(1).

    Per origin, idle connections are reused most-recent-first and waiting requests are
    served first-come first-served; HTTP/2 connections carry streams up to the server's
    limit. `httpx.Limits` and the pool timeout of `httpx.Timeout` are honoured. A reused
    connection that dies before any response byte is retried once on a fresh one when
    the request is idempotent (or `retry_post=True`) and its body can be sent again.
    The transport runs on asyncio and is bound to the event loop that first uses it.

    Arguments:
        verify: TLS verification as in httpx: `True`, a CA bundle path, `False`, or an
            `ssl.SSLContext`.
        cert: a client certificate, as in httpx (deprecated there; prefer `verify`).
        trust_env: read `SSL_CERT_FILE` / `SSL_CERT_DIR` for the default context.
        http1: offer HTTP/1.1.
        http2: offer HTTP/2 (ALPN on https; prior knowledge on http if `http1=False`).
        limits: `max_connections` across all origins, `max_keepalive_connections`
            idle, and `keepalive_expiry` seconds.
        retries: how many times a failed connect is tried again.
        local_address: the local IP address to connect from.
        uds: connect through this Unix domain socket instead of TCP.
        socket_options: socket options set on each new connection.
        max_lifetime: seconds after which a connection is no longer reused and is
            closed once idle, so a long-busy pool re-resolves DNS.
        retry_post: also retry non-idempotent requests (POST, PATCH) once when a reused
            connection died before any response byte.
        network_backend: an `httpcore.AsyncNetworkBackend` (for tests).
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        retries: int = 0,
        local_address: str | None = None,
        uds: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
        max_lifetime: float | None = None,
        retry_post: bool = False,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        if not (http1 or http2):
            msg = "PoolTransport needs http1=True or http2=True"
            raise ValueError(msg)
        if max_lifetime is not None and max_lifetime <= 0:
            msg = f"max_lifetime must be positive seconds or None, not {max_lifetime!r}"
            raise ValueError(msg)
        self._ssl = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        self._ssl.set_alpn_protocols(
            ["h2"] if not http1 else ["http/1.1", "h2"] if http2 else ["http/1.1"]
        )
        self._http1, self._http2 = http1, http2
        self._retries = retries
        self._local_address = local_address
        self._uds = uds
        self._socket_options = list(socket_options) if socket_options is not None else None
        self._retry_post = retry_post
        self._backend = network_backend if network_backend is not None else AsyncioBackend()
        self._pool = Pool(
            max_connections=limits.max_connections,
            max_keepalive=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            max_lifetime=max_lifetime,
            maybe_h2=lambda scheme: http2 and (scheme == b"https" or not http1),
            opener=self._open,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self._closed = False
        self._in_flight = 0
        self._served = 0
        self._retried = 0
        self._errors: dict[str, int] = {}

    # -- requests ------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` on a pooled connection and return the streaming response."""
        self._check_loop()
        key = _key(request)
        timeouts = request.extensions.get("timeout") or {}
        pool_timeout = timeouts.get("pool")
        pool = self._pool
        fresh = retried = False
        self._in_flight += 1
        try:
            for _ in range(MAX_ATTEMPTS):
                conn = await pool.acquire(key, pool_timeout, fresh)
                try:
                    if conn.inner is None:
                        await pool.connect(conn, request)
                    inner = conn.inner
                    body: _Body
                    if isinstance(inner, HTTP11Connection):
                        status, headers, body, extensions = await inner.send(request, timeouts)
                    else:
                        status, headers, body, extensions = await _send_core(inner, request)
                except BaseException as exc:
                    pool.release(conn)
                    if isinstance(exc, httpcore.ConnectionNotAvailable):
                        continue  # HTTP/2 GOAWAY before our stream: try elsewhere
                    if _goaway(exc) and self._may_retry(request, exc):
                        self._retried += 1  # the server is shutting the connection down
                        continue
                    # Reused: by an earlier request, or (HTTP/2) by other streams meanwhile.
                    if (
                        not retried
                        and conn.used > 1
                        and not _response_started(conn.inner)
                        and self._may_retry(request, exc)
                    ):
                        retried = fresh = True
                        self._retried += 1
                        if logger.isEnabledFor(logging.DEBUG):
                            logger.debug("retrying %s on a fresh connection", request.method)
                        continue
                    raise
                return httpx.Response(
                    status_code=status,
                    headers=headers,
                    stream=_ResponseStream(self, conn, body, request),
                    extensions=extensions,
                )
            msg = "the server refused new streams on every connection tried"
            raise httpcore.RemoteProtocolError(msg)  # noqa: TRY301
        except Exception as exc:
            self._in_flight -= 1
            mapped = self._fail(exc, request)
            if mapped is exc:
                raise
            raise mapped from exc
        except BaseException:
            self._in_flight -= 1
            raise

    def _may_retry(self, request: httpx.Request, exc: BaseException) -> bool:
        """Whether a failure on a reused connection, before any response, may be retried."""
        if not (self._retry_post or request.method in IDEMPOTENT):
            return False
        if not isinstance(request.stream, httpx.ByteStream):
            return False  # a streamed body cannot be sent again
        if isinstance(exc, httpcore.ReadError | httpcore.WriteError):
            return True
        return _goaway(exc) or (
            isinstance(exc, httpcore.RemoteProtocolError) and "disconnected" in str(exc)
        )

    def _fail(self, exc: Exception, request: httpx.Request) -> Exception:
        """The httpx exception for `exc`, counted by kind."""
        if isinstance(exc, httpx.TransportError):
            mapped: Exception = exc
        else:
            for cls in type(exc).__mro__:
                kind = _ERRORS.get(cls)
                if kind is not None:
                    mapped = kind(str(exc) or cls.__name__, request=request)
                    break
            else:
                return exc
        name = type(mapped).__name__
        self._errors[name] = self._errors.get(name, 0) + 1
        return mapped

    def _done(self, conn: Conn) -> None:
        self._in_flight -= 1
        self._served += 1
        self._pool.release(conn)

    def _check_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            msg = (
                "httpool's PoolTransport runs on asyncio only; for another event loop "
                "(trio) use transport='httpx' in the provider"
            )
            raise RuntimeError(msg) from None
        if loop is not self._loop:
            if self._loop is None:
                self._loop = loop
            else:
                raise RuntimeError(_loop_message("another event loop"))
        if self._closed:
            raise TransportClosedError

    # -- connecting ----------------------------------------------------------------------

    async def _open(self, conn: Conn, request: httpx.Request) -> tuple[Inner, bool]:
        """Connect (with retries), do TLS, and pick HTTP/1.1 or HTTP/2 by ALPN."""
        origin = conn.origin.core
        timeouts = request.extensions.get("timeout") or {}
        timeout = timeouts.get("connect")
        host = origin.host.decode("ascii")
        delay, left = 0.0, self._retries
        while True:
            try:
                if self._uds is None:
                    stream = await self._backend.connect_tcp(
                        host,
                        origin.port,
                        timeout=timeout,
                        local_address=self._local_address,
                        socket_options=self._socket_options,
                    )
                else:
                    stream = await self._backend.connect_unix_socket(
                        self._uds, timeout=timeout, socket_options=self._socket_options
                    )
                break
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                if left <= 0:
                    raise
                left -= 1
                await self._backend.sleep(delay)
                delay = max(0.5, delay * 2)
        if origin.scheme == b"https":
            sni = request.extensions.get("sni_hostname") or host
            try:
                stream = await stream.start_tls(self._ssl, server_hostname=sni, timeout=timeout)
            except BaseException:
                await stream.aclose()
                raise
        conn.stream = stream
        ssl_object = stream.get_extra_info("ssl_object")
        is_h2 = not self._http1 or (
            ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2"
        )
        expiry = self._pool.keepalive_expiry
        if is_h2:
            return httpcore.AsyncHTTP2Connection(origin, stream, keepalive_expiry=expiry), True
        if not HTTPTOOLS:  # pragma: no cover
            return httpcore.AsyncHTTP11Connection(origin, stream, keepalive_expiry=expiry), False
        return HTTP11Connection(stream, expiry), False

    # -- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection, idle or in use, and fail waiting requests.

        Later requests raise `RuntimeError`. Closing twice is fine.
        """
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        if self._loop is not None and loop is not self._loop:
            self._pool.closed = True  # its sockets belong to the other loop: leave them
            if self._pool.conns:
                logger.warning(
                    "PoolTransport closed from another event loop: %d connections of the "
                    "loop that used it were abandoned",
                    len(self._pool.conns),
                )
            return
        await self._pool.aclose()

    def stats(self) -> dict[str, Any]:
        """JSON-ready counters, cheap to take (no connection is inspected).

        Keys: `connections_open` (established, not closing), `connections_idle`,
        `connections_in_use`, `connections_connecting`, `connections_opened` and
        `connections_closed` (totals so far), `requests_in_flight` (sent and not yet
        closed), `waiters` (waiting for a connection), `requests_served` (responses
        closed), `retries`, `errors` (count by httpx exception name, e.g.
        `{"PoolTimeout": 2}`), and `origins`: `{"https://host:443": {"open", "idle",
        "in_use"}}`.
        """
        pool = self._pool
        idle = len(pool.lru)
        open_ = pool.total - pool.connecting - pool.closing_n
        return {
            "connections_open": open_,
            "connections_idle": idle,
            "connections_in_use": open_ - idle,
            "connections_connecting": pool.connecting,
            "connections_opened": pool.opened,
            "connections_closed": pool.closed_count,
            "requests_in_flight": self._in_flight,
            "waiters": pool.waiting,
            "requests_served": self._served,
            "retries": self._retried,
            "errors": dict(self._errors),
            "origins": {
                o.label: {"open": o.open, "idle": o.idle_n, "in_use": o.open - o.idle_n}
                for o in list(pool.origins.values())
                if o.open
            },
        }


def _response_started(inner: Inner | None) -> bool:
    """Whether response bytes arrived on an HTTP/1.1 connection (so no retry)."""
    return isinstance(inner, HTTP11Connection) and inner.response_started


def _goaway(exc: BaseException) -> bool:
    """Whether `exc` is how httpcore and h2 fail a stream on a connection that got GOAWAY."""
    if isinstance(exc, httpcore.RemoteProtocolError):
        return "ConnectionTerminated" in str(exc)
    return isinstance(exc, httpcore.LocalProtocolError) and "ConnectionState.CLOSED" in str(exc)


def _key(request: httpx.Request) -> tuple[bytes, bytes, int]:
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


def _to_core(request: httpx.Request) -> httpcore.Request:
    """The httpcore request for `request`."""
    url = request.url
    scheme = url.raw_scheme
    port = url.port or (443 if scheme == b"https" else 80)
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(scheme=scheme, host=url.raw_host, port=port, target=url.raw_path),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


async def _send_core(
    inner: Inner | None, request: httpx.Request
) -> tuple[int, list[tuple[bytes, bytes]], _Body, dict[str, Any]]:
    """Send `request` on an httpcore connection (HTTP/2, or HTTP/1.1 without httptools)."""
    assert isinstance(inner, httpcore.AsyncConnectionInterface)
    response = await inner.handle_async_request(_to_core(request))
    body: Any = response.stream
    return response.status, response.headers, body, dict(response.extensions)


class _Body(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


class _ResponseStream(httpx.AsyncByteStream):
    """A response body that gives its connection back exactly once when closed."""

    def __init__(
        self, transport: PoolTransport, conn: Conn, body: _Body, request: httpx.Request
    ) -> None:
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
