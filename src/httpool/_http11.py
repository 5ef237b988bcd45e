"""The wire: an asyncio network backend for httpcore, and a fast HTTP/1.1 connection.

`AsyncioBackend` gives httpcore-compatible streams on plain asyncio transports (no
per-read cancel scopes); a server's close is seen by the protocol, so the stale check
needs no system call. `HTTP11Connection` speaks HTTP/1.1 over any such stream with
httptools (llhttp) parsing the responses; HTTP/2 stays with httpcore.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpcore
import httpx

try:
    import httptools
except ImportError:  # pragma: no cover - a dependency; without it httpcore's h11 is used
    HTTPTOOLS = False
else:
    HTTPTOOLS = True

__all__ = ["HTTPTOOLS", "AsyncioBackend", "HTTP11Connection"]

HIGH_WATER = 256 * 1024  # pause reading when this much is buffered
READ_SIZE = 64 * 1024
NEW, ACTIVE, IDLE, CLOSED = range(4)
NO_BODY = frozenset({204, 304})
TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")  # a method or header name (RFC 9110)


def _wake(future: asyncio.Future[None] | None, exc: BaseException | None = None) -> None:
    if future is not None and not future.done():
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drainer: asyncio.Future[None] | None = None
        self.reading_paused = self.writing_paused = self.aborted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        _wake(self.waiter)

    def eof_received(self) -> None:
        self.eof = True
        _wake(self.waiter)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        _wake(self.waiter)
        _wake(self.drainer, httpcore.WriteError(str(exc or "connection closed")))

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _wake(self.drainer)


def _timed_out(future: asyncio.Future[None], exc: type[Exception]) -> None:
    _wake(future, exc())


class _Stream(httpcore.AsyncNetworkStream):
    """An httpcore network stream over an asyncio transport and `_Protocol`."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()

    async def _wait(self, future: asyncio.Future[None], seconds: float | None, exc: Any) -> None:
        if seconds is None:
            await future
            return
        timer = self._loop.call_later(seconds, _timed_out, future, exc)
        try:
            await future
        finally:
            timer.cancel()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        protocol = self._protocol
        while not protocol.chunks:
            if protocol.eof:
                if protocol.error is not None:
                    raise httpcore.ReadError(str(protocol.error))
                return b""
            protocol.waiter = self._loop.create_future()
            await self._wait(protocol.waiter, timeout, httpcore.ReadTimeout)
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            protocol.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        protocol.size -= len(chunk)
        if protocol.reading_paused and protocol.size < HIGH_WATER // 4:
            protocol.reading_paused = False
            protocol.transport.resume_reading()
        return chunk

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        protocol = self._protocol
        if protocol.error is not None or protocol.aborted:
            msg = "the connection is closed"
            raise httpcore.WriteError(msg)
        if not buffer or protocol.eof:
            return  # as a socket would, until a reset: the next read tells what happened
        protocol.transport.write(buffer)
        if protocol.writing_paused:
            protocol.drainer = self._loop.create_future()
            await self._wait(protocol.drainer, timeout, httpcore.WriteTimeout)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Close at once (abort: nothing is left to flush on a connection we drop)."""
        self._protocol.eof = self._protocol.aborted = True
        self._protocol.transport.abort()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        protocol = self._protocol
        try:
            async with asyncio.timeout(timeout):
                transport = await self._loop.start_tls(
                    protocol.transport, protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self.close()
            msg = "TLS handshake timed out"
            raise httpcore.ConnectTimeout(msg) from None
        except (OSError, ConnectionError) as exc:  # ssl.SSLError is an OSError
            self.close()
            raise httpcore.ConnectError(str(exc)) from exc
        except BaseException:
            self.close()
            raise
        protocol.transport = transport
        return self

    def get_extra_info(self, info: str) -> Any:
        protocol = self._protocol
        if info == "is_readable":  # an idle connection with data or EOF: the server closed it
            return bool(protocol.chunks) or protocol.eof
        if info == "peer_closed":
            return protocol.eof
        names = {"client_addr": "sockname", "server_addr": "peername"}
        return protocol.transport.get_extra_info(names.get(info, info))


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend on plain asyncio transports."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        connect = loop.create_connection(_Protocol, host, port, local_addr=local)
        stream = await self._connect(connect, timeout)
        sock = stream.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        return await self._connect(loop.create_unix_connection(_Protocol, path), timeout)

    async def _connect(self, connect: Any, seconds: float | None) -> _Stream:
        try:
            async with asyncio.timeout(seconds):
                _, protocol = await connect
        except TimeoutError:
            msg = "timed out while connecting"
            raise httpcore.ConnectTimeout(msg) from None
        except (OSError, socket.gaierror) as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Stream(protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class HTTP11Connection:
    """One HTTP/1.1 connection: send an `httpx.Request`, parse the response with httptools.

    It has the pool-facing methods of httpcore's connections (`is_available`,
    `has_expired`, `is_idle`, `is_closed`, `aclose`).
    """

    def __init__(self, stream: httpcore.AsyncNetworkStream, keepalive_expiry: float | None) -> None:
        self._stream = stream
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
        parts = [method, b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
        chunked, length = False, -1
        for name, value in request.headers.raw:
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
