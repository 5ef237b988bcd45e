"""`PoolTransport`: the engine as an httpx transport (its httpx adapter).

It turns each `httpx.Request` into the engine's `Request` (the URL's raw parts and the
raw header list as httpx holds them: nothing is parsed again), hands it to the `Engine`
(`_core`), and turns the answer into an `httpx.Response` and the engine's exceptions
into httpx's of the same names. The `trace` extension gets httpcore's `Request` in its
`info`, as on httpx's own transport. A network backend given for tests may be
httpcore's: its exceptions are taken as the engine's of the same names.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from ._core import Engine, PooledBody
from ._dial import Dialer, SocketOption
from ._dns import DNSCache, Resolver
from ._http2 import H2Counters
from ._http11 import MAX_HEAD_SIZE, MAX_HEADERS
from ._messages import METHODS, NO_TIMEOUTS, Request, Trace
from ._network import NetworkBackend
from ._proxy import Routes
from ._proxy_config import build_routes
from ._truststore import SYSTEM, path_context, system_context

if TYPE_CHECKING:
    import httpx2

__all__ = ["PoolTransport", "as_httpx_limits", "map_error"]


#: The limits of a bare `PoolTransport()`: those of httpx's own transport (a provider
#: uses httpool's `DEFAULT_LIMITS`, of `_config`).
HTTPX_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
DEFAULT_DNS_TTL = 10.0  # seconds a host's addresses are shared by new connections


def as_httpx_limits(limits: httpx.Limits | httpx2.Limits) -> httpx.Limits:
    """httpx's `Limits` with the values of httpx2's (the engine reads httpx's)."""
    if isinstance(limits, httpx.Limits):
        return limits
    return httpx.Limits(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
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


def library_error(exc: BaseException, library: Any, request: Any) -> Any:
    """`library`'s (httpx's or httpx2's) transport error named as `exc` or its nearest
    base of such a name (the engine's exceptions have httpx's names; httpool's
    `LimitTimeout` becomes a `PoolTimeout`), for `request`; `None` when there is none."""
    for cls in type(exc).__mro__:
        kind = getattr(library, cls.__name__, None)
        if isinstance(kind, type) and issubclass(kind, library.TransportError):
            return kind(str(exc) or cls.__name__, request=request)
    return None


def map_error(exc: Exception, request: httpx.Request) -> Exception:
    """The httpx exception of the name of the engine's `exc` (`exc` itself if none)."""
    return library_error(exc, httpx, request) or exc


@functools.cache
def _proxy_context() -> ssl.SSLContext:
    """The TLS context for an HTTPS proxy given without one (as httpx makes it)."""
    context = httpx.create_ssl_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def _core_request(request: httpx.Request) -> httpcore.Request:
    """The httpcore form of `request`, for the `trace` extension's `info`."""
    url = request.url
    port = url.port or (443 if url.raw_scheme == b"https" else 80)
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=port, target=url.raw_path),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


def engine_request(
    request: Any, in_memory: type[Any], not_read: type[Exception], trace: Trace | None
) -> Request:
    """The engine's `Request` for an httpx or an httpx2 request (the two libraries have
    one API): `in_memory` and `not_read` are the library's `ByteStream` and
    `RequestNotRead`, for a body held in memory, which the engine may send again."""
    url = request.url
    scheme = url.raw_scheme
    stream = request.stream
    body: Any = stream
    if isinstance(stream, in_memory):
        try:
            body = request.content
        except not_read:
            body = b"".join(stream)
    extensions = request.extensions
    try:
        method = METHODS[request.method]
    except KeyError:
        method = request.method.encode("utf-8", "surrogatepass")
    return Request(
        method,
        scheme,
        url.raw_host,
        url.port or (443 if scheme == b"https" else 80),
        url.raw_path,
        request.headers.raw,
        body,
        extensions.get("timeout") or NO_TIMEOUTS,
        extensions.get("sni_hostname"),
        trace,
    )


def _httpcore_trace(trace: Any, request: httpx.Request) -> Trace:
    """The engine's trace hook for httpx's `trace` extension: the `request` in an
    event's info is httpcore's, as httpx's own transport gives it."""

    def hook(name: str, info: dict[str, Any]) -> Any:
        if "request" in info:
            info = {**info, "request": _core_request(request)}
        return trace(name, info)

    return hook


class _ResponseStream(PooledBody, httpx.AsyncByteStream):
    """The engine's response body as httpx reads it, with httpx's exceptions."""

    mapped = staticmethod(map_error)
    library_response = httpx.Response


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
        network_backend: a network backend with httpcore's methods, such as an
            `httpcore.AsyncNetworkBackend` (for tests).
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
        network_backend: NetworkBackend | httpcore.AsyncNetworkBackend | None = None,
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
        if dns_ttl < 0:
            msg = f"dns_ttl must be seconds >= 0 (0 turns the DNS cache off), not {dns_ttl!r}"
            raise ValueError(msg)
        self.dns = DNSCache(dns_ttl, resolver) if dns_ttl > 0 or resolver is not None else None
        routes = proxy if isinstance(proxy, Routes) else build_routes(proxy, trust_env)
        counters = H2Counters()
        dialer = Dialer(
            ssl_context=ssl_context,
            http1=http1,
            retries=retries,
            local_address=local_address,
            uds=uds,
            socket_options=socket_options,
            network_backend=network_backend,
            keepalive_expiry=limits.keepalive_expiry,
            proxy_context=_proxy_context,
            given_context=ssl_context is verify,
            http2=http2,
            max_head_size=max_head_size,
            max_headers=max_headers,
            counters=counters,
            dns=self.dns,
        )
        #: The engine itself (shared with an `Httpx2PoolTransport(engine=...)`).
        self.engine = Engine(
            dialer=dialer,
            max_connections=limits.max_connections,
            max_keepalive=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            max_lifetime=max_lifetime,
            maybe_h2=lambda scheme: http2 and (scheme == b"https" or not http1),
            retry_post=retry_post,
            routes=routes,
            counters=counters,
        )
        self.proxy_labels = self.engine.proxy_labels

    # -- requests ------------------------------------------------------------------------

    def handle_async_request(self, request: httpx.Request) -> Coroutine[Any, Any, httpx.Response]:
        """Send `request` on a pooled connection and return the streaming response.

        (The engine's coroutine is returned as this method's own: awaited, it gives the
        `httpx.Response`, and raises httpx's exceptions.)
        """
        if not isinstance(request.stream, httpx.ByteStream | httpx.AsyncByteStream):
            msg = "PoolTransport needs an async request body (use httpx.AsyncClient)"
            raise TypeError(msg)
        trace = request.extensions.get("trace")
        sent = engine_request(
            request,
            httpx.ByteStream,
            httpx.RequestNotRead,
            None if trace is None else _httpcore_trace(trace, request),
        )
        return self.engine.send(sent, _ResponseStream, request)

    # -- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection, idle or in use, and fail waiting requests.

        Later requests raise `RuntimeError`. Closing twice is fine.
        """
        await self.engine.aclose()

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
        return self.engine.stats()
