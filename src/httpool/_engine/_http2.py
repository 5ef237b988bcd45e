"""An HTTP/2 connection on the h2 state machine: one reader, many streams, GOAWAY per RFC 9113.

`HTTP2Connection` carries concurrent requests over one network stream. A single reader
task feeds what arrives to h2 and hands the events to per-stream records; requests never
read for each other, and a lock is held only while bytes go to the socket. Streams are
opened up to the server's `SETTINGS_MAX_CONCURRENT_STREAMS`; request bodies wait for
flow-control windows and stop when the stream is answered or reset; response data is
acknowledged as the application takes it.

GOAWAY frames are taken out of the byte stream before h2 sees them (h2 would close the
whole connection state and refuse the frames of the streams the server still answers),
so streams at or below the GOAWAY's last stream id run to completion while streams
above it fail with `StreamNotProcessed`, as do streams reset with `REFUSED_STREAM`: the
server says it did not process them, so they may be sent again elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import Frame, GoAwayFrame

from ._errors import (
    ConnectError,
    ConnectionNotAvailable,
    ConnectTimeout,
    LocalProtocolError,
    NetworkError,
    PoolTimeout,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    StreamNotProcessed,
    WriteTimeout,
)
from ._h2_inbound import problem
from ._messages import Request, once
from ._network import NetworkStream

_INFORMATIONAL = h2.events.InformationalResponseReceived

__all__ = ["H2Counters", "HTTP2Connection", "StreamBudget"]

READ_SIZE = 64 * 1024
STREAM_WINDOW = 1 << 20  # receive window per stream: a slow reader holds at most this much
CONNECTION_WINDOW = 16 << 20  # receive window of the connection, shared by its streams
DEFAULT_WINDOW = 65_535  # RFC 9113's initial window
PING_AFTER = 10.0  # an idle connection older than this is PINGed before it is reused
PING_TIMEOUT = 2.0  # a PING not answered in time: the connection is dead
BUDGET_TTL = 60.0  # seconds a learned per-connection stream budget holds
ACK_BATCH = 256 * 1024  # bytes of closed streams given back to the connection window at once
GOAWAY_TYPE = 0x7
OPEN, CLOSED = range(2)
SKIP_HEADERS = frozenset(
    {b"host", b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)  # connection-specific (RFC 9113 §8.2.2), and Host (sent as :authority)
SECRET_HEADERS = frozenset({b"authorization", b"proxy-authorization"})  # never HPACK-indexed
SHORT_COOKIE = 20  # a shorter cookie is never indexed either (guessable): h2's own rule
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-z]+"  # a lowercase field name (RFC 9110 §5.6.2, 9113 §8.2)
TOKEN = re.compile(_TOKEN)
NAMES = re.compile(rb"(?:" + _TOKEN + rb"(?:," + _TOKEN + rb")*)?")  # names joined by commas
METHOD = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # any control character but HTAB


class StreamBudget:
    """How many streams an origin's server processes on one connection before GOAWAY.

    Learned when a GOAWAY cuts off streams in flight (a server that ends connections
    after N requests, such as nginx's `keepalive_requests`): new connections then carry
    at most that many streams, so the next GOAWAY cuts nothing off. Forgotten after
    `BUDGET_TTL` seconds, so a GOAWAY of a server shutting down is not held for long.
    """

    __slots__ = ("_limit", "_until")

    def __init__(self) -> None:
        self._limit: int | None = None
        self._until = 0.0

    def learn(self, processed: int) -> None:
        """A connection's GOAWAY came after `processed` streams and cut off later ones."""
        self._limit = max(1, processed)
        self._until = time.monotonic() + BUDGET_TTL

    @property
    def limit(self) -> int | None:
        """Streams per connection, or None when unknown (or forgotten)."""
        if self._limit is not None and time.monotonic() > self._until:
            self._limit = None
        return self._limit


class H2Counters:
    """Totals a transport shares with its HTTP/2 connections (read by `stats()`)."""

    __slots__ = ("goaways", "streams_open")

    def __init__(self) -> None:
        self.streams_open = 0
        self.goaways = 0


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _timed_out(future: asyncio.Future[None], exc: type[Exception]) -> None:
    if not future.done():
        future.set_exception(exc())


def _request_head(request: Request) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The header fields of `request`'s HEADERS frame, and whether a body follows.

    h2's own outbound checks and normalisation are off (they are a quarter of what h2
    spends sending a request's headers), so this guarantees what they did, and a little
    more, before a stream opens: pseudo-header fields first, each once, with a non-empty
    :path (and no CONNECT); field names lowercase tokens (so no ':' and no whitespace);
    no connection-specific field, TE only as "trailers"; no control character but HTAB
    in a value, and no whitespace around it; Authorization, Proxy-Authorization and
    short cookies never indexed by HPACK. A request that breaks a rule fails with
    `LocalProtocolError` naming the field (never its value).
    """
    authority: bytes | None = None
    has_body = False
    names: list[bytes] = []
    values: list[bytes] = []
    fields: list[tuple[bytes, bytes]] = []
    for name, raw in request.headers:
        lower = name.lower()
        names.append(lower)
        values.append(raw)
        value = raw.strip(b" \t")
        if lower in SKIP_HEADERS:
            if lower == b"host":
                authority = value
            elif lower == b"transfer-encoding":
                has_body = True
            continue
        if lower == b"content-length":
            has_body = has_body or value != b"0"
        elif lower == b"te" and value.lower() != b"trailers":
            continue
        if lower in SECRET_HEADERS or (lower == b"cookie" and len(value) < SHORT_COOKIE):
            fields.append(NeverIndexedHeaderTuple(lower, value))
        else:
            fields.append((lower, value))
    if authority is None:  # no Host header: the URL's
        authority = request.authority
    method = request.method
    path = request.target
    if (
        NAMES.fullmatch(b",".join(names)) is None
        or CONTROL.search(b"\t".join(values)) is not None
        or METHOD.fullmatch(method) is None
        or method == b"CONNECT"
        or not path
        or CONTROL.search(path) is not None
        or path.find(b" ") >= 0  # (not `in`: see _http11.FIND)
        or not authority
    ):
        _refuse(request, names, values, authority)
    head = [
        (b":method", method),
        (b":authority", authority),
        (b":scheme", request.scheme),
        (b":path", path),
    ]
    return head + fields, has_body


def _refuse(request: Request, names: list[bytes], values: list[bytes], authority: bytes) -> None:
    """Raise the error that says which rule of `_request_head` the request breaks."""
    for name, value in zip(names, values, strict=True):
        if TOKEN.fullmatch(name) is None:
            shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
            msg = f"Illegal header name {shown}: a header name is a token"
            raise LocalProtocolError(msg)
        if CONTROL.search(value) is not None:
            msg = (
                f"Illegal header value of {name!r}: a control character (CR, LF, NUL or "
                "another below 0x20 but tab) in a header value"
            )
            raise LocalProtocolError(msg)
    method = request.method_text
    if METHOD.fullmatch(request.method) is None:
        msg = f"Illegal method {method!r}: a method is a token"
    elif method == "CONNECT":
        msg = "CONNECT is not sent over HTTP/2 by httpool; give the proxy as proxy=..."
    elif not authority:
        msg = "the request has an empty Host header; HTTP/2 needs an :authority"
    else:
        msg = "the request target is empty or has a space or a control character"
    raise LocalProtocolError(msg)


class _Stream:
    """One request's stream: what the reader saw for it, and who waits on it."""

    __slots__ = (
        "chunks", "ended", "error", "headers", "id", "local_ended", "malformed", "reset",
        "sender", "status", "waiter", "window_waiter",
    )  # fmt: skip

    def __init__(self, stream_id: int) -> None:
        self.id = stream_id
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[tuple[bytes, int]] = deque()  # (data, flow-controlled length)
        self.ended = False  # the server ended the stream (END_STREAM)
        self.local_ended = False  # we ended it
        self.reset = False  # reset by either side
        self.malformed = False  # its answer broke RFC 9113 §8.2-8.3: it never ends well
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None  # the request or body reader
        self.window_waiter: asyncio.Future[None] | None = None  # the body sender
        self.sender: asyncio.Task[None] | None = None  # a body sent beside the response

    def wake(self) -> None:
        _wake(self.waiter)
        _wake(self.window_waiter)

    @property
    def stopped(self) -> bool:
        """Sending more body is pointless: the stream is reset, failed or answered."""
        return self.reset or self.ended or self.error is not None


class HTTP2Connection:
    """One HTTP/2 connection: send `Request`s on concurrent streams.

    It has the pool-facing methods of `HTTP11Connection` (`send`, `is_available`,
    `has_expired`, `is_idle`, `is_closed`, `aclose`) and `max_streams`, the server's
    stream limit once its SETTINGS arrived. Call `start` once before use.
    """

    def __init__(
        self,
        stream: NetworkStream,
        keepalive_expiry: float | None,
        counters: H2Counters | None = None,
        budget: StreamBudget | None = None,
        *,
        ping_after: float | None = None,
        ping_timeout: float | None = None,
    ) -> None:
        self._stream = stream
        self._expiry = keepalive_expiry
        self._counters = counters if counters is not None else H2Counters()
        self._budget = budget if budget is not None else StreamBudget()
        self._opened = 0  # streams opened so far
        self._ping_after = PING_AFTER if ping_after is None else ping_after
        self._ping_timeout = PING_TIMEOUT if ping_timeout is None else ping_timeout
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,  # `_request_head` guarantees what they check
            normalize_outbound_headers=False,
            # `_h2_inbound.problem` checks what a response needs, h2's own checks cost
            # about 6 % of a request (tests/engine/test_http2_inbound.py holds the two
            # to the same verdicts)
            validate_inbound_headers=False,
            normalize_inbound_headers=False,  # it only joins `cookie` fields of requests
        )
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65_536,
            },
        )
        self._loop = asyncio.get_running_loop()
        self._state = OPEN
        self._streams: dict[int, _Stream] = {}
        self._lock = asyncio.Lock()
        self._out: list[bytes] = []  # taken from h2, to be written in this order
        self._dirty = False  # h2 holds bytes the writer task is to take and write
        self._kicker: asyncio.Task[None] | None = None
        self._owed = 0  # bytes of closed streams not yet given back to the connection window
        self._reader: asyncio.Task[None] | None = None
        self._settings: asyncio.Future[None] = self._loop.create_future()
        # The server's SETTINGS_MAX_CONCURRENT_STREAMS, kept from h2's remote settings
        # when they change (reading them from h2 costs more than the rest of a hand-out).
        self._limit = int(self._h2.remote_settings.max_concurrent_streams)
        self._ping: asyncio.Future[None] | None = None
        self._slot: asyncio.Future[None] | None = None  # waiters for a free stream
        self._goaway: int | None = None  # the last stream id of a GOAWAY received
        self._error: Exception | None = None  # why the connection ended
        self._pending = b""  # a frame header (or GOAWAY frame) not yet complete
        self._left = 0  # bytes of the current frame still to pass through to h2
        self._last_read = time.monotonic()
        self._expire_at: float | None = None

    # -- starting ------------------------------------------------------------------------

    async def start(self, seconds: float | None) -> None:
        """Send the preface, start the reader and wait for the server's SETTINGS."""
        h2c = self._h2
        h2c.initiate_connection()
        h2c.increment_flow_control_window(CONNECTION_WINDOW - DEFAULT_WINDOW)
        try:
            await self._flush(seconds)
            self._reader = self._loop.create_task(self._read_loop())
            async with asyncio.timeout(seconds):
                await asyncio.shield(self._settings)
        except TimeoutError:
            await self.aclose()
            msg = "the server sent no HTTP/2 SETTINGS in time"
            raise ConnectTimeout(msg) from None
        except (NetworkError, RemoteProtocolError) as exc:
            await self.aclose()
            msg = f"the HTTP/2 connection failed before the server's SETTINGS: {exc}"
            raise ConnectError(msg) from exc
        except BaseException:
            await self.aclose()
            raise
        self._idle()

    # -- the reader ----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        stream, h2c = self._stream, self._h2
        error: Exception
        try:
            while True:
                data = await stream.read(READ_SIZE)
                if not data:
                    error = ReadError("the server closed the HTTP/2 connection")
                    break
                self._last_read = time.monotonic()
                data = self._take_goaway(data)
                if data:
                    self._dispatch(h2c.receive_data(data))
                    out = h2c.data_to_send()
                    if out:
                        self._send_soon(out)
        except asyncio.CancelledError:
            error = ReadError("the HTTP/2 connection was closed")
        except h2.exceptions.ProtocolError as exc:
            error = RemoteProtocolError(f"HTTP/2 protocol error: {exc!r}")
            with contextlib.suppress(Exception):
                self._send_soon(h2c.data_to_send())  # h2's GOAWAY, if it made one
        except Exception as exc:  # noqa: BLE001 (a read failure ends the connection)
            error = exc if isinstance(exc, ReadError) else ReadError(str(exc))
        self._end(error)

    def _take_goaway(self, data: bytes) -> bytes:
        """The bytes for h2: GOAWAY frames are taken out and handled here."""
        left = self._left
        if left >= len(data) and not self._pending:
            self._left = left - len(data)
            return data
        buf = self._pending + data if self._pending else data
        size = len(buf)
        pieces: list[bytes] = []
        start = i = left
        if left:
            pieces.append(buf[:left])
        while i + 9 <= size:
            length = int.from_bytes(buf[i : i + 3], "big")
            if buf[i + 3] == GOAWAY_TYPE:
                end = i + 9 + length
                if end > size:
                    break  # wait for the whole frame
                pieces.append(buf[start:i])
                frame, _ = Frame.parse_frame_header(memoryview(buf[i : i + 9]))
                frame.parse_body(memoryview(buf[i + 9 : end]))
                assert isinstance(frame, GoAwayFrame)
                self._on_goaway(frame.last_stream_id, frame.error_code)
                i = start = end
                continue
            i += 9 + length
        if i > size:  # inside a frame's payload: pass it all on
            self._left = i - size
            self._pending = b""
            pieces.append(buf[start:])
        else:
            self._left = 0
            self._pending = buf[i:]
            pieces.append(buf[start:i])
        return b"".join(pieces)

    def _dispatch(self, events: list[Any]) -> None:  # noqa: PLR0912 (a branch per event)
        streams = self._streams
        for event in events:
            kind = type(event)
            if kind is h2.events.DataReceived:
                stream = streams.get(event.stream_id)
                size = event.flow_controlled_length
                if stream is None:  # a stream we gave up: free the connection's window
                    self._release(size, event.stream_id)
                    continue
                stream.chunks.append((event.data, size))
                _wake(stream.waiter)
            elif kind is h2.events.ResponseReceived:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    why = problem(event.headers)
                    if why is None:
                        self._on_headers(stream, event.headers)
                    else:
                        self._malformed(stream, why)
            elif kind is h2.events.TrailersReceived or kind is _INFORMATIONAL:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    why = problem(event.headers, trailers=kind is h2.events.TrailersReceived)
                    if why is not None:
                        self._malformed(stream, why)
            elif kind is h2.events.StreamEnded:
                stream = streams.get(event.stream_id)
                if stream is not None and not stream.malformed:
                    stream.ended = True
                    stream.wake()
            elif kind is h2.events.StreamReset:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    self._on_reset(stream, event.error_code)
            elif kind is h2.events.WindowUpdated:
                if event.stream_id:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        _wake(stream.window_waiter)
                else:
                    self._wake_senders()
            elif kind is h2.events.RemoteSettingsChanged:
                self._limit = self._h2.remote_settings.max_concurrent_streams
                self._wake_senders()  # the initial window may have changed
                _wake(self._slot)  # and the stream limit
                self._slot = None
                _wake(self._settings)
            elif kind is h2.events.PingAckReceived:
                _wake(self._ping)

    def _on_headers(self, stream: _Stream, headers: list[tuple[bytes, bytes]]) -> None:
        # `problem()` found the block well-formed (RFC 9113 §8.3): pseudo-header fields
        # first, and a response has exactly one, :status, so the fields are all the rest.
        name, value = headers[0]
        assert name == b":status"
        stream.status, stream.headers = int(value), headers[1:]
        _wake(stream.waiter)

    def _malformed(self, stream: _Stream, why: str) -> None:
        """A malformed response is a stream error (RFC 9113 §8.1.1): reset that stream
        with PROTOCOL_ERROR and fail its request; the connection's other streams go on."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream.id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
        stream.error = RemoteProtocolError(f"malformed HTTP/2 response: {why}")
        stream.reset = stream.malformed = True
        stream.wake()

    def _on_reset(self, stream: _Stream, code: int) -> None:
        stream.reset = True
        if code == h2.errors.ErrorCodes.REFUSED_STREAM and stream.status is None:
            msg = "the server refused the stream (REFUSED_STREAM): the request was not processed"
            stream.error = StreamNotProcessed(msg, goaway=False)
        elif not (code == h2.errors.ErrorCodes.NO_ERROR and stream.ended):
            # NO_ERROR after a complete response only stops the upload (RFC 9113 §8.1).
            name = getattr(code, "name", str(code))
            stream.error = RemoteProtocolError(f"the server reset the stream ({name})")
        stream.wake()

    def _on_goaway(self, last_stream_id: int, error_code: int) -> None:
        self._counters.goaways += 1
        if self._goaway is None or last_stream_id < self._goaway:
            self._goaway = last_stream_id
        msg = (
            f"the server sent GOAWAY (last stream {last_stream_id}, error {error_code}) "
            "before processing this request: it was not processed"
        )
        cut = [stream for stream in self._streams.values() if stream.id > last_stream_id]
        if cut and not error_code:
            self._budget.learn((last_stream_id + 1) // 2)  # client stream ids are odd
        for stream in cut:
            if stream.status is None:
                stream.error = StreamNotProcessed(msg, goaway=True)
            else:
                stream.error = RemoteProtocolError(
                    "the server answered a stream its GOAWAY says it did not process"
                )
            stream.reset = True
            stream.wake()
        _wake(self._slot)
        self._slot = None

    def _wake_senders(self) -> None:
        for stream in self._streams.values():
            _wake(stream.window_waiter)

    def _end(self, error: Exception) -> None:
        """The connection is over: fail what is still running on it."""
        if self._error is None:
            self._error = error
        self._state = CLOSED
        for stream in self._streams.values():
            if stream.error is None and not (stream.ended and stream.status is not None):
                stream.error = error
            stream.wake()
        if not self._settings.done():
            self._settings.set_exception(error)
            self._settings.exception()  # retrieved: a start that gave up does not warn
        if self._ping is not None and not self._ping.done():
            self._ping.set_exception(error)
            self._ping.exception()
        _wake(self._slot)
        self._slot = None

    # -- writing -------------------------------------------------------------------------

    async def _flush(self, seconds: float | None) -> None:
        """Write what h2 (and `_send_soon`) has for the socket, in order."""
        async with self._lock:
            data = self._h2.data_to_send()
            if self._out:
                data = b"".join([*self._out, data])
                self._out.clear()
            if data:
                await self._stream.write(data, seconds)

    def _send_soon(self, data: bytes) -> None:
        """Queue `data` and write it from a small task (the reader never waits to write)."""
        if data:
            self._out.append(data)
            self._kick()

    def _kick(self) -> None:
        """Have the writer task take what h2 holds and write it soon: the HEADERS frames
        of a burst of requests leave in one write."""
        self._dirty = True
        if self._kicker is None:
            self._kicker = self._loop.create_task(self._write_queued())

    async def _write_queued(self) -> None:
        try:
            while self._out or self._dirty:
                self._dirty = False
                await self._flush(None)
        except Exception:  # noqa: BLE001, S110 (the reader sees a broken connection)
            pass
        finally:
            self._kicker = None

    # -- requests ------------------------------------------------------------------------

    async def send(
        self, request: Request
    ) -> tuple[int, list[tuple[bytes, bytes]], _Body, dict[str, Any]]:
        """Send `request` on a new stream; return status, headers, body and extensions.

        Raises `ConnectionNotAvailable` (nothing was sent) when the connection got GOAWAY
        or closed before the stream opened, and `StreamNotProcessed` when the server says
        it did not process the stream.
        """
        if not self.is_available():
            raise ConnectionNotAvailable
        fields, has_body = _request_head(request)  # a malformed request fails before a stream
        if not self._streams and time.monotonic() - self._last_read > self._ping_after:
            await self._check_alive()
        h2c = self._h2
        limit = self._limit
        timeouts = request.timeouts
        # Every stream h2 counts open is in `_streams`, so h2's count (a walk over all its
        # streams) is needed only when ours reaches the limit.
        if len(self._streams) >= limit and h2c.open_outbound_streams >= limit:
            await self._wait_for_slot(timeouts.get("pool"))
        try:
            stream_id = h2c.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            self._goaway = 0  # every stream id used: no new streams here
            raise ConnectionNotAvailable from None
        stream = _Stream(stream_id)
        self._streams[stream_id] = stream
        self._opened += 1
        self._counters.streams_open += 1
        self._expire_at = None
        write_timeout = timeouts.get("write")
        read_timeout = timeouts.get("read")
        try:
            try:
                h2c.send_headers(stream_id, fields, end_stream=not has_body)
            except h2.exceptions.ProtocolError as exc:
                raise LocalProtocolError(str(exc)) from exc
            if has_body:
                await self._start_body(stream, request, write_timeout)
            else:
                stream.local_ended = True
                self._kick()
            await self._headers(stream, read_timeout)
        except BaseException:
            self._forget(stream)
            raise
        status = stream.status
        assert status is not None
        extensions: dict[str, Any] = {
            "http_version": b"HTTP/2",
            "stream_id": stream_id,
            "network_stream": self._stream,
        }
        return status, stream.headers, _Body(self, stream, read_timeout), extensions

    async def _wait_for_slot(self, seconds: float | None) -> None:
        """Wait until the server's stream limit lets another stream open: at most the
        pool timeout in all (then `PoolTimeout`, as for a connection the pool lacks)."""
        h2c = self._h2
        try:
            async with asyncio.timeout(seconds):
                while h2c.open_outbound_streams >= self._limit:
                    if self._slot is None:
                        self._slot = self._loop.create_future()
                    await asyncio.shield(self._slot)
                    if not self.is_available():
                        raise ConnectionNotAvailable
        except TimeoutError:
            msg = "no stream of the HTTP/2 connection came free within the pool timeout"
            raise PoolTimeout(msg) from None

    async def _headers(self, stream: _Stream, seconds: float | None) -> None:
        """Wait for the response headers of `stream`.

        The read timeout runs once the request body is sent, as on HTTP/1.1 and in
        httpcore: while a sender task uploads (at the pace the server's windows allow,
        each wait bounded by the write timeout) the server has nothing to answer yet.
        """
        while stream.status is None:
            if stream.error is not None:
                raise stream.error
            sender = stream.sender
            await self._wait(stream, None if sender and not sender.done() else seconds)

    async def _start_body(self, stream: _Stream, request: Request, seconds: float | None) -> None:
        """Queue a body that fits the send window at once; send a larger or streamed one
        from a task beside the response."""
        body: Any = request.body
        h2c = self._h2
        if isinstance(body, bytes):
            data = body
            if len(data) <= h2c.local_flow_control_window(stream.id):
                size = h2c.max_outbound_frame_size
                for start in range(0, len(data), size):
                    h2c.send_data(stream.id, data[start : start + size])
                h2c.end_stream(stream.id)
                stream.local_ended = True
                self._send_soon(h2c.data_to_send())
                return
            body = once(data)
        await self._flush(seconds)  # the HEADERS frame
        stream.sender = self._loop.create_task(self._sender(stream, body, seconds))

    async def _sender(self, stream: _Stream, body: Any, seconds: float | None) -> None:
        try:
            await self._send_body(stream, body, seconds)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 (handed to the request that waits)
            if stream.error is None and not stream.stopped:
                stream.error = exc
        stream.wake()  # the request waits for its answer with the read timeout from now

    async def _send_body(self, stream: _Stream, body: Any, seconds: float | None) -> None:
        """Send `body` as the windows allow; stop when the stream is answered or reset."""
        h2c = self._h2
        sid = stream.id
        async for chunk in body:
            view = memoryview(chunk)
            while view:
                if stream.stopped or self._state != OPEN:
                    return
                try:
                    window = h2c.local_flow_control_window(sid)
                    size = min(len(view), window, h2c.max_outbound_frame_size)
                    if size > 0:
                        h2c.send_data(sid, view[:size])
                except h2.exceptions.StreamClosedError:
                    return  # reset meanwhile; the reader tells the request why
                if size <= 0:
                    await self._wait_window(stream, seconds)
                    continue
                view = view[size:]
                await self._flush(seconds)
        if stream.stopped or self._state != OPEN:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            h2c.end_stream(sid)
            stream.local_ended = True
        await self._flush(seconds)

    async def _wait_window(self, stream: _Stream, seconds: float | None) -> None:
        stream.window_waiter = future = self._loop.create_future()
        timer = None
        if seconds is not None:
            timer = self._loop.call_later(seconds, _timed_out, future, WriteTimeout)
        try:
            await future
        finally:
            stream.window_waiter = None
            if timer is not None:
                timer.cancel()

    async def _wait(self, stream: _Stream, seconds: float | None) -> None:
        """Wait until the reader has news for `stream` (ReadTimeout after `seconds`)."""
        stream.waiter = future = self._loop.create_future()
        if seconds is None:
            try:
                await future
            finally:
                stream.waiter = None
            return
        timer = self._loop.call_later(seconds, _timed_out, future, ReadTimeout)
        try:
            await future
        finally:
            stream.waiter = None
            timer.cancel()

    async def _check_alive(self) -> None:
        """PING an idle connection; if no answer comes in time, close it."""
        if self._ping is None or self._ping.done():
            self._ping = self._loop.create_future()
            self._h2.ping(os.urandom(8))
            try:
                await self._flush(self._ping_timeout)
            except NetworkError:
                await self.aclose()
                raise ConnectionNotAvailable from None
        try:
            async with asyncio.timeout(self._ping_timeout):
                await asyncio.shield(self._ping)
        except (TimeoutError, NetworkError):
            await self.aclose()
            raise ConnectionNotAvailable from None

    def _forget(self, stream: _Stream) -> None:
        """The request is done with `stream`: reset it if still open, free its window."""
        if self._streams.pop(stream.id, None) is None:
            return
        self._counters.streams_open -= 1
        stream.wake()  # a read of this body in another task ends (`_Body` sees it closed)
        if stream.sender is not None and not stream.sender.done():
            stream.sender.cancel()
        unread = sum(size for _, size in stream.chunks)
        stream.chunks.clear()
        h2c = self._h2
        if self._state == OPEN:
            if not stream.reset and not (stream.ended and stream.local_ended):
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    h2c.reset_stream(stream.id, h2.errors.ErrorCodes.CANCEL)
                self._kick()
            self._release(unread, stream.id)  # the stream is closed now
        _wake(self._slot)
        self._slot = None
        if not self._streams:
            self._idle()  # after a GOAWAY the pool closes it when it is given back

    def _idle(self) -> None:
        if self._expiry is not None:
            self._expire_at = time.monotonic() + self._expiry

    def _took(self, stream: _Stream, size: int) -> None:
        """The application took `size` flow-controlled bytes: let the server send more."""
        if stream.ended and stream.local_ended:
            self._release(size, stream.id)  # closed: only the connection's window is left
        elif size and self._state == OPEN:
            h2c = self._h2
            h2c.acknowledge_received_data(size, stream.id)
            self._send_soon(h2c.data_to_send())  # a WINDOW_UPDATE, if h2 made one

    def _release(self, size: int, closed_id: int) -> None:
        """Give `size` bytes of a closed stream back to the connection's window.

        Done a batch at a time through `closed_id` (any closed stream: h2 then opens only
        the connection's window): h2 looks a closed stream up at some cost, and with a
        16 MiB window the server never waits on a batch held back.
        """
        self._owed += size
        if self._owed >= ACK_BATCH and self._state == OPEN:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.acknowledge_received_data(self._owed, closed_id)
            self._owed = 0
            self._kick()

    # -- the pool's view -----------------------------------------------------------------

    @property
    def max_streams(self) -> int | None:
        """The server's SETTINGS_MAX_CONCURRENT_STREAMS (None until its SETTINGS came)."""
        if not self._settings.done():
            return None
        return self._limit

    @property
    def stream_budget(self) -> int | None:
        """Streams the server processes per connection, as learned (see `StreamBudget`),
        or None when unknown."""
        return self._budget.limit

    @property
    def goaway_received(self) -> bool:
        """Whether the server sent GOAWAY (the connection takes no new streams)."""
        return self._goaway is not None

    async def aclose(self) -> None:
        """Close the connection; streams still open fail."""
        if self._error is None:
            self._error = ReadError("the HTTP/2 connection was closed")
        if self._state == OPEN:
            self._state = CLOSED
            with contextlib.suppress(Exception):
                self._h2.close_connection()
                data = b"".join([*self._out, self._h2.data_to_send()])
                self._out.clear()
                if data and not self._lock.locked():
                    await self._stream.write(data, 0.5)
        self._state = CLOSED
        reader = self._reader
        if reader is not None and not reader.done():
            reader.cancel()
        await self._stream.aclose()
        self._end(self._error)

    def is_available(self) -> bool:
        """Open, no GOAWAY received, stream budget left: it takes new streams (up to
        `max_streams`)."""
        if self._state != OPEN or self._goaway is not None:
            return False
        limit = self._budget.limit
        return limit is None or self._opened < limit

    def has_expired(self) -> bool:
        """Past its keep-alive expiry while idle, closed, or told to go away."""
        if self._state != OPEN or self._goaway is not None:
            return True
        return self._expire_at is not None and time.monotonic() > self._expire_at

    def is_idle(self) -> bool:
        """No stream open."""
        return not self._streams

    def is_closed(self) -> bool:
        """Closed for good."""
        return self._state == CLOSED


class _Body:
    """The response body of one stream, read as it is iterated."""

    __slots__ = ("_closed", "_conn", "_stream", "_timeout")
    ascii_head = False  # (not looked at: HPACK gives the fields one by one)

    def __init__(self, conn: HTTP2Connection, stream: _Stream, timeout: float | None) -> None:
        self._conn = conn
        self._stream = stream
        self._timeout = timeout
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        stream = self._stream
        while not stream.chunks:
            if self._closed:  # by another task, while this one waited
                msg = "the response was closed while it was being read"
                raise ReadError(msg)
            if stream.ended:
                raise StopAsyncIteration
            if stream.error is not None:
                await self.aclose()
                raise stream.error
            try:
                await self._conn._wait(stream, self._timeout)
            except BaseException:
                await self.aclose()  # a failed or cancelled read resets the stream
                raise
        data, size = stream.chunks.popleft()
        self._conn._took(stream, size)
        return data

    async def aclose(self) -> None:
        """Done with the stream: reset it unless the response was read to its end."""
        if not self._closed:
            self._closed = True
            self._conn._forget(self._stream)
