"""Opening a connection through a proxy: to an HTTP(S) proxy, a CONNECT tunnel, SOCKS.

`open_via_proxy` gives the stream the dialer goes on with: for an https target, a
tunnel to the target (TLS to the target then runs inside it, HTTP/2 by ALPN as usual);
for an http target through an HTTP(S) proxy, the stream to the proxy itself, on which
requests go in absolute form. The CONNECT exchange is spoken with h11 (the reference
HTTP/1.1 state machine httpcore uses); the SOCKS handshakes with python-socks.

A tunnel that fails (the proxy refuses the connection, answers 407 or 403, or breaks
the exchange) raises `ProxyError` naming the proxy masked and the status; its
connection is closed before the error leaves.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any

import h11

from ._errors import (
    ConnectError,
    ConnectTimeout,
    NetworkError,
    ProxyError,
    ReadTimeout,
    WriteTimeout,
)
from ._network import NetworkBackend, NetworkStream
from ._proxy import SOCKS, ProxyConf
from ._records import Origin

__all__ = ["forwards", "open_via_proxy"]

READ_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024  # the proxy's answer to CONNECT, bounded


def forwards(via: ProxyConf, scheme: bytes) -> bool:
    """Whether requests to `scheme` go to `via` in absolute form (no tunnel)."""
    return scheme == b"http" and via.scheme in ("http", "https")


def _authority(host: bytes, port: int) -> bytes:
    shown = b"[" + host + b"]" if b":" in host else host
    return b"%s:%d" % (shown, port)


async def open_via_proxy(
    backend: NetworkBackend,
    via: ProxyConf,
    origin: Origin,
    seconds: float | None,
    *,
    default_context: Callable[[], ssl.SSLContext],
    local_address: str | None = None,
    socket_options: Iterable[Any] | None = None,
) -> NetworkStream:
    """A stream to the target through `via` (or to `via` itself for a forwarded request).

    `default_context` makes the TLS context for an HTTPS proxy given without one.
    """
    if via.scheme in SOCKS:
        from ._socks import open_socks

        return await open_socks(via, origin, seconds, local_address=local_address)
    try:
        stream = await backend.connect_tcp(
            via.host,
            via.port,
            timeout=seconds,
            local_address=local_address,
            socket_options=socket_options,
        )
    except ConnectError as exc:
        msg = f"could not connect to the proxy {via.label}: {exc}"
        raise ProxyError(msg) from None
    try:
        if via.scheme == "https":
            context = via.ssl_context or default_context()
            stream = await stream.start_tls(context, server_hostname=via.host, timeout=seconds)
        if not forwards(via, origin.scheme):
            await _connect(stream, via, _authority(origin.host, origin.port), seconds)
    except BaseException:
        await stream.aclose()
        raise
    return stream


async def _connect(
    stream: NetworkStream, via: ProxyConf, authority: bytes, seconds: float | None
) -> None:
    """Ask the proxy for a tunnel to `authority` (`CONNECT host:port`); raise if refused."""
    target = authority.decode("ascii", "replace")
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    headers = [(b"Host", authority), *via.headers]
    try:
        data = conn.send(h11.Request(method=b"CONNECT", target=authority, headers=headers))
        data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
        await stream.write(data, seconds)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.read(READ_SIZE, seconds))
            elif not isinstance(event, h11.InformationalResponse):
                break
    except (ReadTimeout, WriteTimeout):
        msg = f"the proxy {via.label} did not answer CONNECT {target} in time"
        raise ConnectTimeout(msg) from None
    except (h11.ProtocolError, NetworkError) as exc:
        msg = f"the proxy {via.label} broke the CONNECT {target} exchange: {exc}"
        raise ProxyError(msg) from None
    if not isinstance(event, h11.Response):
        msg = f"the proxy {via.label} closed the connection before answering CONNECT {target}"
        raise ProxyError(msg)
    status = event.status_code
    if not 200 <= status < 300:
        reason = event.reason.decode("latin-1", "replace")
        hint = " (check the proxy's credentials)" if status == 407 else ""
        msg = f"the proxy {via.label} refused the tunnel to {target}: {status} {reason}{hint}"
        raise ProxyError(msg)
    if conn.trailing_data[0]:
        msg = f"the proxy {via.label} sent bytes of its own after opening the tunnel"
        raise ProxyError(msg)
