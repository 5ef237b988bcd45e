"""`PoolTransport`: httpool's httpx transport, an O(1) connection pool.

The data path runs one way: `PoolTransport` (retries, counters, event loop) asks the
`Scheduler` (`_scheduler`, on the records of `_records`) for a connection, which a `Dialer`
(`_dial`, on `_asyncio_backend`) opens; the exchange itself (`_exchange`) runs on an
`HTTP11Connection` (`_http11`) or an `HTTP2Connection` (`_http2`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from ._dial import Dialer, SocketOption
from ._dns import DNSCache, Resolver
from ._exchange import Body, ResponseStream, map_error, pool_key, response_started
from ._http2 import H2Counters, HTTP2Connection, StreamNotProcessed
from ._http11 import MAX_HEAD_SIZE, MAX_HEADERS, HTTP11Connection
from ._proxy import Routes
from ._records import Key
from ._scheduler import Conn, Scheduler, TransportClosedError
from ._truststore import SYSTEM, path_context, system_context

if TYPE_CHECKING:
    import httpx2

__all__ = ["PoolTransport", "as_httpx_limits"]

logger = logging.getLogger("httpool.transport")

#: The limits of a bare `PoolTransport()`: those of httpx's own transport (a provider
#: uses httpool's `DEFAULT_LIMITS`, of `_config`).
HTTPX_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
DEFAULT_DNS_TTL = 10.0  # seconds a host's addresses are shared by new connections
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
MAX_RESENDS = 1  # re-sends of a request the server did not process (GOAWAY, REFUSED_STREAM)
MAX_HOPS = 3  # connections given up before our stream opened (GOAWAY, closed, dead on PING)
MAX_ATTEMPTS = 1 + 1 + MAX_RESENDS + MAX_HOPS  # the first try and one stale-connection retry


def as_httpx_limits(limits: httpx.Limits | httpx2.Limits) -> httpx.Limits:
    """httpx's `Limits` with the values of httpx2's (the engine reads httpx's)."""
    if isinstance(limits, httpx.Limits):
        return limits
    return httpx.Limits(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
    )


def _loop_message(kind: str) -> str:
    return (
        f"this httpool client belongs to {kind} (for example one started by a second "
        "TestClient or by asyncio.run); get the client from the running app's pool "
        "(httpool.client(name) in a route, or pool.client(name)) instead of keeping it "
        "across event loops"
    )


def _ssl_context(
    verify: ssl.SSLContext | str | bool, cert: Any, trust_env: bool, *, http1: bool, http2: bool
) -> ssl.SSLContext:
    """The TLS context: the caller's own, unchanged, or a new one offering our protocols.

    A context the caller gives is never changed (it may be shared with other clients, and
    a context cannot be copied faithfully: its client certificate and CA directories are
    not readable), so the protocols it offers by ALPN are the caller's, and the protocol
    the server picks decides between HTTP/1.1 and HTTP/2. A context httpool makes offers
    HTTP/1.1 and/or HTTP/2 as asked.
    """
    if isinstance(verify, ssl.SSLContext):
        if cert is not None:
            msg = (
                "PoolTransport(cert=..., verify=<ssl.SSLContext>): httpool never changes a "
                "context it is given; load the client certificate into that context "
                "(context.load_cert_chain(...)) and leave cert unset"
            )
            raise ValueError(msg)
        return verify
    if isinstance(verify, str):  # the OS trust store (truststore), or a CA path
        context = system_context() if verify == SYSTEM else path_context(verify)
        if cert is not None:
            context.load_cert_chain(*((cert,) if isinstance(cert, str) else cert))
    else:
        context = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
    context.set_alpn_protocols(
        ["h2"] if not http1 else ["http/1.1", "h2"] if http2 else ["http/1.1"]
    )
    return context


class _Tries:
    """What one request has used of its retries."""

    __slots__ = ("fresh", "hops", "resends", "retried")

    def __init__(self) -> None:
        self.fresh = False  # the next try wants a new connection
        self.retried = False  # the one stale-connection retry is used
        self.resends = 0  # re-sends after "not processed"
        self.hops = 0  # connections that could not open our stream


class PoolTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` whose connection pool hands out connections in O(1).

    Per origin, idle connections are reused most-recent-first and waiting requests are
    served first-come first-served; HTTP/2 connections carry streams up to the server's
    limit. `httpx.Limits` and the pool timeout of `httpx.Timeout` are honoured. A reused
    connection that dies before any response byte is retried once on a fresh one when
    the request is idempotent (or `retry_post=True`) and its body can be sent again.
    An HTTP/2 request the server did not process (above a GOAWAY's last stream id, or
    refused with REFUSED_STREAM) is sent again once on another connection whatever its
    method.
    The transport runs on asyncio and is bound to the event loop that first uses it.

    Arguments:
        verify: TLS verification as in httpx: `True`, a CA bundle path, `False`, or an
            `ssl.SSLContext`; or `"system"`, the operating system's trust store (needs
            `httpool[truststore]`). A context given here is never changed: it offers the
            protocols its owner set by ALPN (`context.set_alpn_protocols(["h2",
            "http/1.1"])` for HTTP/2), and the server's choice decides the protocol.
        cert: a client certificate, as in httpx (deprecated there; prefer `verify`).
        trust_env: read `SSL_CERT_FILE` / `SSL_CERT_DIR` for the default context, and
            the proxy variables when no `proxy` is given.
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
        max_head_size: the largest HTTP/1.1 response head, in bytes (100 KiB, as httpx's
            stock transport); a larger one fails with `httpx.RemoteProtocolError`.
        max_headers: the most header lines an HTTP/1.1 response head may have (100).
        proxy: a proxy for every request (`http://`, `https://`, `socks5://`,
            `socks5h://`, `socks4://`, `socks4a://` URL, or an `httpx.Proxy`). Without
            one, and with `trust_env`, the environment's `HTTP_PROXY`, `HTTPS_PROXY`,
            `ALL_PROXY` and `NO_PROXY` decide, as an `httpx.AsyncClient` reads them.
        dns_ttl: seconds a host's DNS answer is shared by the connections opened
            meanwhile (one lookup for a burst); 0 resolves for each connection.
            Either way a name with IPv6 and IPv4 addresses is connected by Happy
            Eyeballs (RFC 8305).
        resolver: an async `(host, port) -> [(family, sockaddr), ...]` used instead of
            the system's resolver (for tests, or a DNS client of your own); its answers
            are cached for `dns_ttl` too.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = HTTPX_LIMITS,
        retries: int = 0,
        local_address: str | None = None,
        uds: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
        max_lifetime: float | None = None,
        retry_post: bool = False,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        max_head_size: int = MAX_HEAD_SIZE,
        max_headers: int = MAX_HEADERS,
        proxy: str | httpx.Proxy | Routes | None = None,
        dns_ttl: float = DEFAULT_DNS_TTL,
        resolver: Resolver | None = None,
    ) -> None:
        if not (http1 or http2):
            msg = "PoolTransport needs http1=True or http2=True"
            raise ValueError(msg)
        if max_lifetime is not None and max_lifetime <= 0:
            msg = f"max_lifetime must be positive seconds or None, not {max_lifetime!r}"
            raise ValueError(msg)
        for name, value in (("max_head_size", max_head_size), ("max_headers", max_headers)):
            if type(value) is not int or value < 1:
                msg = f"{name} must be a positive whole number, not {value!r}"
                raise ValueError(msg)
        ssl_context = _ssl_context(verify, cert, trust_env, http1=http1, http2=http2)
        self._retry_post = retry_post
        if dns_ttl < 0:
            msg = f"dns_ttl must be seconds >= 0 (0 turns the DNS cache off), not {dns_ttl!r}"
            raise ValueError(msg)
        self.dns = DNSCache(dns_ttl, resolver) if dns_ttl > 0 or resolver is not None else None
        self._routes = proxy if isinstance(proxy, Routes) else Routes.build(proxy, trust_env)
        self.proxy_labels = self._routes.describe() if self._routes is not None else []
        self._h2 = H2Counters()
        dialer = Dialer(
            ssl_context=ssl_context,
            http1=http1,
            retries=retries,
            local_address=local_address,
            uds=uds,
            socket_options=socket_options,
            network_backend=network_backend,
            keepalive_expiry=limits.keepalive_expiry,
            given_context=ssl_context is verify,
            http2=http2,
            max_head_size=max_head_size,
            max_headers=max_headers,
            counters=self._h2,
            dns=self.dns,
        )
        self._scheduler = Scheduler(
            max_connections=limits.max_connections,
            max_keepalive=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            max_lifetime=max_lifetime,
            maybe_h2=lambda scheme: http2 and (scheme == b"https" or not http1),
            opener=dialer,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self._closed = False
        self._in_flight = 0
        self._served = 0
        self._retried = 0
        self._resent = 0
        self._errors: dict[str, int] = {}

    # -- requests ------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` on a pooled connection and return the streaming response."""
        self._check_loop()
        key = pool_key(request) if self._routes is None else self._proxied_key(request)
        timeouts = request.extensions.get("timeout") or {}
        pool_timeout = timeouts.get("pool")
        scheduler = self._scheduler
        tries = _Tries()
        self._in_flight += 1
        try:
            for _ in range(MAX_ATTEMPTS):
                conn = await scheduler.acquire(key, pool_timeout, tries.fresh)
                try:
                    if conn.inner is None:
                        await scheduler.connect(conn, request)
                    inner = conn.inner
                    body: Body
                    assert isinstance(inner, HTTP11Connection | HTTP2Connection)
                    status, headers, body, extensions = await inner.send(request, timeouts)
                except BaseException as exc:
                    scheduler.release(conn)
                    if self._again(tries, exc, request, conn):
                        continue
                    raise
                return httpx.Response(
                    status_code=status,
                    headers=headers,
                    stream=ResponseStream(self, conn, body, request),
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

    def _proxied_key(self, request: httpx.Request) -> Key:
        """The pool key of `request` with its proxy: pooled per (proxy, target origin)."""
        key: Key = pool_key(request)
        via = self._routes.route(request.url) if self._routes is not None else None
        return key if via is None else (*key, via)

    def _again(self, tries: _Tries, exc: BaseException, request: httpx.Request, conn: Conn) -> bool:
        """Whether to try `request` again after `exc` (the retry rules, in one place)."""
        if isinstance(exc, httpcore.ConnectionNotAvailable):
            if tries.hops < MAX_HOPS:
                tries.hops += 1  # nothing was sent on it: try another connection
                return True
            msg = "no connection tried could take a new stream (GOAWAY or closed)"
            raise httpcore.RemoteProtocolError(msg) from exc
        if isinstance(exc, StreamNotProcessed):
            if tries.resends < MAX_RESENDS and isinstance(request.stream, httpx.ByteStream):
                tries.resends += 1  # the server says it did not process it: any method
                tries.fresh = not exc.goaway  # after GOAWAY that connection takes no more
                self._resent += 1
                return True
            return False
        # Reused: by an earlier request, or (HTTP/2) by other streams meanwhile.
        if (
            not tries.retried
            and conn.used > 1
            and not response_started(conn.inner)
            and self._may_retry(request, exc)
        ):
            tries.retried = tries.fresh = True
            self._retried += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("retrying %s on a fresh connection", request.method)
            return True
        return False

    def _may_retry(self, request: httpx.Request, exc: BaseException) -> bool:
        """Whether a failure on a reused connection, before any response, may be retried."""
        if not (self._retry_post or request.method in IDEMPOTENT):
            return False
        if not isinstance(request.stream, httpx.ByteStream):
            return False  # a streamed body cannot be sent again
        if isinstance(exc, httpcore.ReadError | httpcore.WriteError):
            return True
        return isinstance(exc, httpcore.RemoteProtocolError) and "disconnected" in str(exc)

    def _fail(self, exc: Exception, request: httpx.Request) -> Exception:
        """The httpx exception for `exc`, counted by kind."""
        mapped = map_error(exc, request)
        if mapped is exc and not isinstance(exc, httpx.TransportError):
            return exc
        name = type(mapped).__name__
        self._errors[name] = self._errors.get(name, 0) + 1
        return mapped

    def _done(self, conn: Conn) -> None:
        self._in_flight -= 1
        self._served += 1
        self._scheduler.release(conn)

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

    # -- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection, idle or in use, and fail waiting requests.

        Later requests raise `RuntimeError`. Closing twice is fine.
        """
        if self._closed:
            return
        self._closed = True
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # not on asyncio (trio): no request ever ran here
            loop = None
        if loop is None or (self._loop is not None and loop is not self._loop):
            self._scheduler.closed = True  # its sockets belong to the other loop: leave them
            if self._scheduler.conns:
                logger.warning(
                    "PoolTransport closed from another event loop: %d connections of the "
                    "loop that used it were abandoned",
                    len(self._scheduler.conns),
                )
            return
        await self._scheduler.aclose()

    def stats(self) -> dict[str, Any]:
        """JSON-ready counters, cheap to take (no connection is inspected).

        Keys: `connections_open` (established, not closing), `connections_idle`,
        `connections_in_use`, `connections_connecting`, `connections_opened` and
        `connections_closed` (totals so far), `requests_in_flight` (sent and not yet
        closed), `waiters` (waiting for a connection), `requests_served` (responses
        closed), `retries`, `errors` (count by httpx exception name, e.g.
        `{"PoolTimeout": 2}`), `origins`: `{"https://host:443": {"open", "idle",
        "in_use"}}`, and for HTTP/2 `streams_open`, `goaways` (GOAWAY frames received)
        and `streams_resent` (requests sent again because the server did not process
        them: above a GOAWAY's last stream id, or refused with REFUSED_STREAM).
        """
        scheduler = self._scheduler
        idle = len(scheduler.lru)
        open_ = scheduler.total - scheduler.connecting - scheduler.closing_n
        return {
            "connections_open": open_,
            "connections_idle": idle,
            "connections_in_use": open_ - idle,
            "connections_connecting": scheduler.connecting,
            "connections_opened": scheduler.opened,
            "connections_closed": scheduler.closed_count,
            "requests_in_flight": self._in_flight,
            "waiters": scheduler.waiting,
            "requests_served": self._served,
            "retries": self._retried,
            "streams_open": self._h2.streams_open,
            "goaways": self._h2.goaways,
            "streams_resent": self._resent,
            "errors": dict(self._errors),
            "origins": {
                o.label: {"open": o.open, "idle": o.idle_n, "in_use": o.open - o.idle_n}
                for o in list(scheduler.origins.values())
                if o.open
            },
        }
