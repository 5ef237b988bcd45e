"""What the engine exchanges: a request and a response as plain values.

The adapters (`PoolTransport` for httpx, `Httpx2PoolTransport` for httpx2) turn their
library's request into a `Request` (a slotted class, built once per request from the
parts their library already holds: no parsing, no copying of headers) and get their
library's response straight from the response's parts (see `_core.PooledBody`); the
engine's own callers get a `Response`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

__all__ = [
    "METHODS",
    "NO_TIMEOUTS",
    "Body",
    "ConnectionBody",
    "Request",
    "Response",
    "Trace",
    "once",
]

#: The `trace` hook: called with an event name (`http11.send_request_headers.started`,
#: and so on, as httpcore names them) and its info; it returns an awaitable.
Trace = Callable[[str, dict[str, Any]], Any]
NO_TIMEOUTS: Mapping[str, float | None] = {}
DEFAULT_PORTS = {b"http": 80, b"https": 443}
#: The usual methods as bytes: an adapter looks a method up here before encoding it.
METHODS = {m: m.encode() for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}


class Body(Protocol):
    """A response body: iterated for its bytes, closed once done (which frees the
    connection)."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


class ConnectionBody(Body, Protocol):
    """A connection's response body, with what its parser saw of the head:
    `ascii_head`, every byte of it is ASCII (False where that is not known)."""

    ascii_head: bool


class Request:
    """One request as the engine sends it.

    `method`, `scheme` (b"http" or b"https"), `host` (raw bytes, IDNA-encoded, an IPv6
    address without brackets) and `port` (always given), `target` (the raw path and
    query), `headers` as sent (a list of (name, value) bytes), `body`: `bytes` when held
    in memory (then it may be sent again) or an async iterable of bytes (sent once),
    `timeouts` (`connect`, `read`, `write`, `pool`: seconds or None), `sni_hostname`
    (the TLS server name instead of the host) and `trace`, a hook for each step.
    """

    __slots__ = (
        "body", "headers", "host", "method", "port", "scheme", "sni_hostname", "target",
        "timeouts", "trace",
    )  # fmt: skip

    def __init__(  # noqa: PLR0917 (positional: built once per request, cheaply)
        self,
        method: bytes,
        scheme: bytes,
        host: bytes,
        port: int,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes] = b"",
        timeouts: Mapping[str, float | None] = NO_TIMEOUTS,
        sni_hostname: str | None = None,
        trace: Trace | None = None,
    ) -> None:
        self.method = method
        self.scheme = scheme
        self.host = host
        self.port = port
        self.target = target
        self.headers = headers
        self.body = body
        self.timeouts = timeouts
        self.sni_hostname = sni_hostname
        self.trace = trace

    @property
    def authority(self) -> bytes:
        """host[:port] as in a URL: the port only when not the scheme's default."""
        colon = self.host.find(b":") >= 0  # (not `in`: see _http11.FIND)
        host = b"[" + self.host + b"]" if colon else self.host
        if DEFAULT_PORTS.get(self.scheme) == self.port:
            return host
        return b"%b:%d" % (host, self.port)

    @property
    def method_text(self) -> str:
        """The method as text, for error messages."""
        return self.method.decode("utf-8", "surrogatepass")

    def __repr__(self) -> str:
        return f"<Request {self.method_text} {self.scheme.decode()}://{self.authority.decode()}>"


class Response:
    """The engine's answer: `status`, `headers` (a list of (name, value) bytes), `body`
    (iterate it for the bytes, then `aclose()` it: that gives the connection back) and
    `extensions`: `http_version`, `reason_phrase` (HTTP/1.1), `stream_id` (HTTP/2) and
    `network_stream` (the connection's stream; the caller's after a 101 or a CONNECT).

    An adapter gets its library's response instead, built from the same values (see
    `_core.PooledBody.answer`), so no `Response` is made on its way.
    """

    __slots__ = ("body", "extensions", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        extensions: dict[str, Any],
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.extensions = extensions


async def once(data: bytes) -> AsyncIterator[bytes]:
    """`data` as an async iterable of one piece (a body in memory sent as a stream)."""
    yield data
