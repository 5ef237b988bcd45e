"""Opening a connection: connect (with retries), TLS, and HTTP/1.1 or HTTP/2 by ALPN."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable

from ._asyncio_backend import AsyncioBackend
from ._dns import DNSCache
from ._errors import ConnectError, ConnectTimeout
from ._http2 import H2Counters, HTTP2Connection, StreamBudget
from ._http11 import MAX_HEAD_SIZE, MAX_HEADERS, HTTP11Connection
from ._messages import Request
from ._network import GivenBackend, NetworkBackend, NetworkStream
from ._records import Conn, Inner, Key
from ._tunnel import forwards, open_via_proxy

logger = logging.getLogger("httpool.transport")

__all__ = ["Dialer", "SocketOption"]

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class Dialer:
    """How a transport opens its connections; the pool calls it for a new slot."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        http1: bool,
        retries: int,
        local_address: str | None,
        uds: str | None,
        socket_options: Iterable[SocketOption] | None,
        network_backend: NetworkBackend | None,
        keepalive_expiry: float | None,
        proxy_context: Callable[[], ssl.SSLContext],
        given_context: bool = False,
        http2: bool = False,
        max_head_size: int = MAX_HEAD_SIZE,
        max_headers: int = MAX_HEADERS,
        counters: H2Counters | None = None,
        dns: DNSCache | None = None,
    ) -> None:
        self._ssl = ssl_context
        self._http1 = http1
        self._retries = retries
        self._local_address = local_address
        self._uds = uds
        self._socket_options = list(socket_options) if socket_options is not None else None
        self._backend: NetworkBackend = (
            GivenBackend(network_backend) if network_backend is not None else AsyncioBackend(dns)
        )
        self._proxy_context = proxy_context  # for an HTTPS proxy given without a context
        self._expiry = keepalive_expiry
        self._alpn_check = given_context and http1  # the caller's context decides ALPN
        self._http2 = http2
        self._max_head = max_head_size
        self._max_headers = max_headers
        self._counters = counters if counters is not None else H2Counters()
        self._budgets: dict[Key, StreamBudget] = {}  # by pool key: origin and proxy

    async def __call__(self, conn: Conn, request: Request) -> tuple[Inner, bool]:
        """Connect (with retries), do TLS, and pick HTTP/1.1 or HTTP/2 by ALPN."""
        origin = conn.origin
        timeout = request.timeouts.get("connect")
        host = origin.host.decode("ascii")
        via = origin.via
        delay, left = 0.0, self._retries
        stream: NetworkStream
        while True:
            try:
                if via is not None:
                    stream = await open_via_proxy(
                        self._backend,
                        via,
                        origin,
                        timeout,
                        default_context=self._proxy_context,
                        local_address=self._local_address,
                        socket_options=self._socket_options,
                    )
                elif self._uds is None:
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
            except (ConnectError, ConnectTimeout):
                if left <= 0:
                    raise
                left -= 1
                await self._backend.sleep(delay)
                delay = max(0.5, delay * 2)
        forward = via is not None and forwards(via, origin.scheme)
        if origin.scheme == b"https":
            sni = request.sni_hostname or host
            try:
                stream = await stream.start_tls(self._ssl, server_hostname=sni, timeout=timeout)
            except BaseException:
                await stream.aclose()
                raise
        conn.stream = stream
        ssl_object = stream.get_extra_info("ssl_object")
        selected = None if ssl_object is None else ssl_object.selected_alpn_protocol()
        is_h2 = not forward and (not self._http1 or selected == "h2")
        # Forwarded to a proxy, the TLS (if any) is the proxy's, not the caller's context.
        if self._alpn_check and not forward and ssl_object is not None and is_h2 != self._http2:
            self._alpn_check = False
            _alpn_warning(conn, self._http2)
        expiry = self._expiry
        if is_h2:
            budget = self._budgets.get(conn.origin.key)  # the full key: per proxy too
            if budget is None:
                budget = self._budgets[conn.origin.key] = StreamBudget()
            h2conn = HTTP2Connection(stream, expiry, self._counters, budget)
            await h2conn.start(timeout)  # closes the stream if it fails
            return h2conn, True
        # To a forward proxy itself: absolute-form targets and the proxy's headers.
        proxy_headers = via.headers if forward else None
        h1 = HTTP11Connection(
            stream,
            expiry,
            max_head_size=self._max_head,
            max_headers=self._max_headers,
            proxy_headers=proxy_headers,
        )
        return h1, False


def _alpn_warning(conn: Conn, http2: bool) -> None:
    """Say once why a connection on the caller's own SSL context speaks another version."""
    if http2:
        said = "http2=True, but the server chose no HTTP/2 by ALPN: this connection speaks"
        said += " HTTP/1.1. If the server speaks HTTP/2, offer it on the ssl.SSLContext"
        said += ' given as verify: context.set_alpn_protocols(["h2", "http/1.1"])'
    else:
        said = "http2=False, but the ssl.SSLContext given as verify offers HTTP/2 by ALPN"
        said += " and the server chose it: this connection speaks HTTP/2. Offer only"
        said += ' HTTP/1.1 on that context (context.set_alpn_protocols(["http/1.1"]))'
    logger.warning(
        "%s to %s (httpool never changes a context it is given)", said, conn.origin.label
    )
