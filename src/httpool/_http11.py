"""A fast HTTP/1.1 connection: send an `httpx.Request`, parse the response with httptools.

`HTTP11Connection` speaks HTTP/1.1 over any httpcore network stream (see
`_asyncio_backend`) with httptools (llhttp) parsing the responses; HTTP/2 stays with
httpcore.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import httpx

try:
    import httptools
except ImportError:  # pragma: no cover - a dependency; without it httpcore's h11 is used
    HTTPTOOLS = False
else:
    HTTPTOOLS = True

__all__ = ["HTTPTOOLS", "HTTP11Connection"]

READ_SIZE = 64 * 1024
NEW, ACTIVE, IDLE, CLOSED = range(4)
NO_BODY = frozenset({204, 304})
TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")  # a method or header name (RFC 9110)


class HTTP11Connection:
    """One HTTP/1.1 connection: send an `httpx.Request`, parse the response with httptools.

    It has the pool-facing methods of httpcore's connections (`is_available`,
    `has_expired`, `is_idle`, `is_closed`, `aclose`).
    """

    def __init__(
        self,
        stream: httpcore.AsyncNetworkStream,
        keepalive_expiry: float | None,
        proxy_headers: tuple[tuple[bytes, bytes], ...] | None = None,
    ) -> None:
        self._stream = stream
        self._proxy_headers = proxy_headers  # to a forward proxy: absolute-form targets
        self._expiry = keepalive_expiry
        self._expire_at: float | None = None
        self._state = NEW
        self._reset(head=False)

    def _reset(self, head: bool) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._head = head
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: deque[bytes] = deque()
        self._got_bytes = self._headers_done = self._done = self._interim = False
        self._keep = True
        self._to_eof = False

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._done:
            self._keep = False  # bytes after the response: do not reuse

    def on_status(self, status: bytes) -> None:
        if not self._headers_done:
            self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._headers_done:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._headers_done:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._interim = True  # 1xx: wait for the final response
            return
        self._status = status
        self._headers_done = True
        self._keep = self._keep and self._parser.should_keep_alive()
        if self._head or status in NO_BODY:
            self._done = True
        elif not any(
            k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self._headers
        ):
            self._to_eof = True  # the body ends when the server closes

    def on_body(self, body: bytes) -> None:
        if not self._done:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self._reason, self._headers = b"", []
        else:
            self._done = True

    # -- requests ------------------------------------------------------------------------

    async def send(
        self, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> tuple[int, list[tuple[bytes, bytes]], _Body, dict[str, Any]]:
        """Send `request`; return status, headers, a body stream and response extensions."""
        if self._state not in (NEW, IDLE):
            raise httpcore.ConnectionNotAvailable
        self._state = ACTIVE
        self._expire_at = None
        self._reset(head=request.method == "HEAD")
        try:
            with contextlib.suppress(httpcore.WriteError):  # the server may have answered
                await self._send(request, timeouts.get("write"))
            read_timeout = timeouts.get("read")
            while not self._headers_done:
                await self._feed(read_timeout)
        except BaseException:
            await self.aclose()
            raise
        version = b"HTTP/" + self._parser.get_http_version().encode()
        extensions = {"http_version": version, "reason_phrase": self._reason.strip()}
        extensions["network_stream"] = self._stream  # type: ignore[assignment]
        return self._status, self._headers, _Body(self, read_timeout), extensions

    async def _send(self, request: httpx.Request, seconds: float | None) -> None:
        method = request.method.encode()
        if not TOKEN.fullmatch(method):
            msg = f"Illegal method {request.method!r}"
            raise httpcore.LocalProtocolError(msg)
        url, raw = request.url, request.headers.raw
        target = url.raw_path
        if self._proxy_headers is not None:
            target = url.raw_scheme + b"://" + url.netloc + target
            raw = [*raw, *self._proxy_headers]
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        chunked, length = False, -1
        for name, value in raw:
            if (
                not TOKEN.fullmatch(name)
                or b"\n" in value
                or b"\r" in value
                or b"\0" in value
                or (name.lower() == b"content-length" and not value.strip().isdigit())
            ):
                msg = f"Illegal header {name!r}: a bad name, or a line break in its value"
                raise httpcore.LocalProtocolError(msg)
            lower = name.lower()
            if lower == b"connection" and b"close" in value.lower():
                self._keep = False
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lower == b"content-length":
                length = int(value)
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        pending, sent = b"".join(parts), 0
        async for chunk in request.stream:  # type: ignore[union-attr]
            if chunk:
                sent += len(chunk)
                pending += b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
                if len(pending) >= READ_SIZE:
                    await self._stream.write(pending, seconds)
                    pending = b""
        if chunked:
            pending += b"0\r\n\r\n"
        elif length != sent and (length >= 0 or sent):
            msg = f"the body has {sent} bytes, its Content-Length says {length}"
            raise httpcore.LocalProtocolError(msg)
        await self._stream.write(pending, seconds)

    async def _feed(self, seconds: float | None) -> bool:
        """Read once and parse; False at the end of the stream."""
        data = await self._stream.read(READ_SIZE, seconds)
        if not data:
            if not self._got_bytes:
                msg = "Server disconnected without sending a response."
                raise httpcore.RemoteProtocolError(msg)
            if self._headers_done and self._to_eof:
                self._done, self._keep = True, False
                return False
            msg = "peer closed connection without sending complete message body"
            raise httpcore.RemoteProtocolError(msg)
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            msg = "protocol upgrades are not supported"
            raise httpcore.RemoteProtocolError(msg) from None
        except httptools.HttpParserError as exc:
            msg = f"malformed response: {exc}"
            raise httpcore.RemoteProtocolError(msg) from exc
        return True

    async def _response_closed(self) -> None:
        if self._state == ACTIVE and self._done and self._keep:
            self._state = IDLE
            if self._expiry is not None:
                self._expire_at = time.monotonic() + self._expiry
        else:
            await self.aclose()

    @property
    def response_started(self) -> bool:
        """Whether any byte of the current response arrived (then a retry is unsafe)."""
        return self._got_bytes

    # -- the pool's view -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection."""
        self._state = CLOSED
        await self._stream.aclose()

    def is_available(self) -> bool:
        """Idle and reusable."""
        return self._state == IDLE

    def has_expired(self) -> bool:
        """Past its keep-alive expiry, or closed by the server while idle."""
        if self._expire_at is not None and time.monotonic() > self._expire_at:
            return True
        return self._state == IDLE and bool(self._stream.get_extra_info("is_readable"))

    def is_idle(self) -> bool:
        """No request on it."""
        return self._state == IDLE

    def is_closed(self) -> bool:
        """Closed for good."""
        return self._state == CLOSED


class _Body:
    """The response body of an `HTTP11Connection`, read as it is iterated."""

    __slots__ = ("_closed", "_conn", "_timeout")

    def __init__(self, conn: HTTP11Connection, timeout: float | None) -> None:
        self._conn = conn
        self._timeout = timeout
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        while not conn._body:
            if conn._done:
                raise StopAsyncIteration
            try:
                more = await conn._feed(self._timeout)
            except BaseException:
                await self.aclose()  # a failed or cancelled read: the connection is closed
                raise
            if not more:
                raise StopAsyncIteration
        return conn._body.popleft()

    async def aclose(self) -> None:
        """Give the connection back (reusable only if the body was read to its end)."""
        if not self._closed:
            self._closed = True
            await self._conn._response_closed()
