"""httpool's HTTP/1.1 connection: send the engine's `Request`, read the response by h11's rules.

`HTTP11Connection` speaks HTTP/1.1 over any network stream (see `_network` and
`_asyncio_backend`). Requests are framed as h11 frames them: the declared
`Content-Length` is enforced before a byte past it is written, and ambiguous framing is
refused. Responses are parsed as h11 parses them (RFC 9112: obs-fold unfolded, bare LF
accepted, values stripped of surrounding whitespace, only `chunked` as a transfer
coding), with a bounded head and header count; the few places where httpool is stricter
than h11 are listed in `tests/engine/test_h11_differential.py`. A connection with any
byte left over after a response is never reused.

The parser is a handful of regular expressions on the bytes read: a response head is
found with one search, checked with one match and split with one `findall`, and a
`Content-Length` body is handed on as read, so the usual small response costs about as
much as a C parser's callbacks would.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType
from typing import Any

from ._errors import ConnectionNotAvailable, LocalProtocolError, RemoteProtocolError, WriteError
from ._messages import Request, Trace, once
from ._network import NetworkStream

__all__ = ["MAX_HEADERS", "MAX_HEAD_SIZE", "HTTP11Connection"]

READ_SIZE = 64 * 1024
COALESCE = 64 * 1024  # a head and a first body chunk up to this size go out in one write
WRITE_SLICE = 256 * 1024  # a larger body goes out in slices of this size, never copied whole
MAX_HEAD_SIZE = 100 * 1024  # the limit httpcore sets on h11
MAX_HEADERS = 100  # header lines in a response head (Apache's LimitRequestFields)
MAX_LENGTH_DIGITS = 20  # of a Content-Length, as in h11
NEW, ACTIVE, IDLE, CLOSED = range(4)
LENGTH, CHUNKED, TO_EOF, DONE = range(4)  # how the rest of a response body is framed

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"  # a method or a field name (RFC 9110 §5.6.2)
_VALUE = rb"[\t\x20-\x7e\x80-\xff]*"  # field-value bytes: no control character but HTAB
REQUEST_HEAD = re.compile(
    _TOKEN + rb" [\x21-\x7e]+ HTTP/1\.1\r\n(?:" + _TOKEN + rb": " + _VALUE + rb"\r\n)*\r\n"
)
TOKEN = re.compile(_TOKEN)
CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of a head: an empty line, CRLF or bare LF
# FIND: on the request path a byte string is searched with `bytes.find`, not `in`: on
# CPython 3.11 `sub in data` first tries `sub` as an integer, and builds and drops a
# TypeError when it is not one (about 2,000 machine instructions, counted by callgrind);
# `find` takes a byte string as it is.
STATUS_FAST = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: (" + _VALUE + rb"))?\r\n")
FIELD_FAST = re.compile(rb"^(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")\r\n", re.MULTILINE)
STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: (.*))?", re.DOTALL)
FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(.*)", re.DOTALL)
CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*")  # h11's: extensions ignored
CHUNK_FAST = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\r\n]*)?[ \t]*\r\n")  # the usual size line
FRAMING = frozenset({b"content-length", b"transfer-encoding", b"host", b"connection", b"upgrade"})
VERSIONS = (b"HTTP/1.0", b"HTTP/1.1")


def _show(data: bytes | bytearray, limit: int = 40) -> str:
    """A short printable form of bytes from the wire, for an error message."""
    text = repr(bytes(data[:limit]))
    return text + "..." if len(data) > limit else text


def _remote(msg: str) -> RemoteProtocolError:
    return RemoteProtocolError(msg)


def parse_head(block: bytes, max_headers: int) -> tuple[int, int, bytes, list[tuple[bytes, bytes]]]:
    """Parse a response head (up to the line feed of its last line, before the empty line).

    Returns (minor version, status, reason phrase, headers with their values stripped).
    """
    lines = block.count(b"\n")
    if lines - 1 > max_headers:
        msg = (
            f"the response head has {lines - 1} header lines, more than max_headers="
            f"{max_headers}; raise PoolTransport(max_headers=...) if the server is trusted"
        )
        raise _remote(msg)
    match = STATUS_FAST.match(block)
    if match is not None:
        headers: list[tuple[bytes, bytes]] = FIELD_FAST.findall(block, match.end())
        if len(headers) == lines - 1:  # every line matched: CRLF only, no obs-fold, no CTL
            if block.find(b" \r\n") >= 0 or block.find(b"\t\r\n") >= 0:  # (see FIND)
                headers = [(name, value.rstrip(b" \t")) for name, value in headers]
            return int(match[1]), int(match[2]), match[3] or b"", headers
    return _parse_head_slowly(block)


def _parse_head_slowly(block: bytes) -> tuple[int, int, bytes, list[tuple[bytes, bytes]]]:
    """`parse_head` for bare LF and obs-fold, and to say what is wrong with a bad head."""
    lines = [line[:-1] if line.endswith(b"\r") else line for line in block.split(b"\n")[:-1]]
    first = lines[0]
    match = STATUS_LINE.fullmatch(first)
    if match is None or CONTROL.search(first):
        msg = (
            f"malformed status line {_show(first)}: a response starts with HTTP/1.1 "
            "(or HTTP/1.0), a space and a three-digit status code"
        )
        raise _remote(msg)
    if match[1] != b"1" or match[2] not in (b"0", b"1"):
        msg = (
            f"unsupported HTTP version in the status line {_show(first)}: httpool "
            "speaks HTTP/1.0 and HTTP/1.1 here"
        )
        raise _remote(msg)
    status = int(match[3])
    if not 100 <= status <= 599:
        msg = f"status code {match[3].decode()} in the status line is outside 100-599"
        raise _remote(msg)
    return int(match[2]), status, match[4] or b"", parse_fields(lines[1:])


def parse_fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Header or trailer lines (line ends removed) as (name, value): obs-fold unfolded."""
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # obs-fold: RFC 9112 §5.2, replaced by one space
            if not fields:
                msg = "malformed response head: a continuation line before any header"
                raise _remote(msg)
            name, value = fields[-1]
            fields[-1] = (name, value + b" " + line.lstrip(b" \t"))
            continue
        match = FIELD_LINE.fullmatch(line)
        if match is None:
            msg = (
                f"malformed header line starting {_show(line.partition(b':')[0], 30)}: "
                "a header line is a token name, a colon and a value"
            )
            raise _remote(msg)
        fields.append((match[1], match[2]))
    out = []
    for name, value in fields:
        stripped = value.strip(b" \t")
        if CONTROL.search(stripped):
            msg = f"header {_show(name)} has a control character in its value"
            raise _remote(msg)
        out.append((name, stripped))
    return out


def check_framing(
    headers: list[tuple[bytes, bytes]],
) -> tuple[list[tuple[bytes, bytes]], int | None, bool, bool]:
    """The body framing a response's headers declare, checked as h11 checks it.

    Returns the headers (a duplicate identical Content-Length dropped, as h11 does), the
    Content-Length or None, whether the body is chunked, and whether the server said
    `Connection: close`.
    """
    length: bytes | None = None
    coding: bytes | None = None
    close = redo = False
    for name, value in headers:
        n = len(name)
        if n == 14 or n == 17 or n == 10:  # noqa: PLR1714 (faster than a set here)
            lower = name.lower()
            if lower == b"content-length":
                if length is not None or not value.isdigit():
                    redo = True
                length = value
            elif lower == b"transfer-encoding":
                if coding is not None:
                    msg = "the response has more than one Transfer-Encoding header"
                    raise _remote(msg)
                coding = value
            elif lower == b"connection" and value.lower().find(b"close") >= 0:
                close = close or b"close" in [p.strip() for p in value.lower().split(b",")]
    if redo:
        headers, length = _content_length(headers)
    if length is not None and len(length) > MAX_LENGTH_DIGITS:
        msg = f"the response's Content-Length has more than {MAX_LENGTH_DIGITS} digits"
        raise _remote(msg)
    if coding is not None and coding != b"chunked":
        if coding.lower() != b"chunked":
            msg = (
                f"unsupported Transfer-Encoding {_show(coding)} in the response: only "
                "'chunked' alone is a framing httpool (like h11) can read"
            )
            raise _remote(msg)
        headers = [(k, v.lower() if k.lower() == b"transfer-encoding" else v) for k, v in headers]
    return headers, None if length is None else int(length), coding is not None, close


def _content_length(headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """h11's rule for several or comma-listed Content-Lengths: all equal, kept once."""
    seen: bytes | None = None
    out = []
    for name, value in headers:
        if name.lower() != b"content-length":
            out.append((name, value))
            continue
        lengths = {part.strip() for part in value.split(b",")}
        if len(lengths) != 1:
            msg = "the response has conflicting Content-Length values"
            raise _remote(msg)
        length = lengths.pop()
        if not length.isdigit():
            msg = f"the response's Content-Length {_show(length)} is not a number"
            raise _remote(msg)
        if seen is None:
            seen = length
            out.append((name, length))
        elif length != seen:
            msg = "the response has conflicting Content-Length headers"
            raise _remote(msg)
    assert seen is not None
    return out, seen


class _Traced:
    """One step of an exchange as httpcore traces it: `http11.<step>.started` and so on."""

    __slots__ = ("_info", "_name", "_trace", "return_value")

    def __init__(self, trace: Trace, name: str, info: dict[str, Any]) -> None:
        self._trace = trace
        self._name = "http11." + name
        self._info = info
        self.return_value: Any = None

    async def _call(self, suffix: str, info: dict[str, Any]) -> None:
        result = self._trace(self._name + suffix, info)
        if not inspect.isawaitable(result):
            msg = "the `trace` extension of an async client must be an async function"
            raise TypeError(msg)
        await result

    async def __aenter__(self) -> _Traced:
        await self._call(".started", self._info)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self._call(".complete", {"return_value": self.return_value})
        else:
            await self._call(".failed", {"exception": exc})


class HTTP11Connection:
    """One HTTP/1.1 connection: send a `Request`, read its response.

    It has the pool-facing methods of httpcore's connections (`is_available`,
    `has_expired`, `is_idle`, `is_closed`, `aclose`). `max_head_size` bounds a response
    head in bytes (informational responses included) and `max_headers` its header lines.
    """

    def __init__(
        self,
        stream: NetworkStream,
        keepalive_expiry: float | None,
        *,
        max_head_size: int = MAX_HEAD_SIZE,
        max_headers: int = MAX_HEADERS,
        proxy_headers: tuple[tuple[bytes, bytes], ...] | None = None,
    ) -> None:
        self._stream = stream
        self._proxy_headers = proxy_headers  # to a forward proxy: absolute-form targets
        self._expiry = keepalive_expiry
        self._max_head = max_head_size
        self._max_headers = max_headers
        self._expire_at: float | None = None
        self._state = NEW
        self._buf: bytes | bytearray = b""  # bytes read; those from `_pos` on not yet consumed
        self._pos = 0
        self._ready = b""  # a body piece already cut from `_buf`
        self._mode = DONE
        self._left = 0  # LENGTH: bytes to come; CHUNKED: bytes left of this chunk
        self._crlf = 0  # CHUNKED: bytes of a chunk's closing CRLF still to check
        self._trailers = False  # CHUNKED: the last chunk came, the trailer section is next
        self._scan = 0  # where the search for a line end resumes in `_buf` (CHUNKED)
        self._keep = True
        self._got_bytes = False
        self._expected = 0  # LENGTH: the Content-Length, for the error message
        self._no_body = self._connect = self._upgrade = False
        self._ascii_head = False  # every byte of the last response head is ASCII

    # -- requests ------------------------------------------------------------------------

    async def send(
        self, request: Request
    ) -> tuple[int, list[tuple[bytes, bytes]], _Body, dict[str, Any]]:
        """Send `request`; return status, headers, a body stream and response extensions."""
        if self._state != NEW and self._state != IDLE:  # noqa: PLR1714
            raise ConnectionNotAvailable
        self._state = ACTIVE
        self._expire_at = None
        self._got_bytes = False
        self._keep = True
        timeouts = request.timeouts
        read_timeout = timeouts.get("read")
        trace = request.trace
        try:
            if trace is None:
                head, length, chunked = self._request_head(request)
                try:  # noqa: SIM105 (cheaper than contextlib.suppress)
                    await self._write(request, head, length, chunked, timeouts.get("write"))
                except WriteError:
                    pass  # the server may have answered
                status, headers, extensions = await self._read_response(read_timeout)
            else:
                status, headers, extensions = await self._exchange_traced(request, timeouts, trace)
        except BaseException:
            if trace is None:
                await self.aclose()
            else:
                async with _Traced(trace, "response_closed", {}):
                    await self.aclose()
            raise
        # The request is kept only for the trace hook: a response body outlives its send,
        # and the request (its header list, its timeouts) should not live on with it.
        kept = None if trace is None else request
        return status, headers, _Body(self, read_timeout, trace, kept), extensions

    async def _exchange_traced(
        self, request: Request, timeouts: Any, trace: Trace
    ) -> tuple[int, list[tuple[bytes, bytes]], dict[str, Any]]:
        """`send` with the `trace` hook called as httpcore calls it (its adapter gives
        the `request` info of its own library)."""
        info: dict[str, Any] = {"request": request}
        seconds = timeouts.get("write")
        try:
            async with _Traced(trace, "send_request_headers", info):
                head, length, chunked = self._request_head(request)
                await self._stream.write(head, seconds)
            async with _Traced(trace, "send_request_body", info):
                await self._write(request, None, length, chunked, seconds)
        except WriteError:
            pass  # the server may have answered
        async with _Traced(trace, "receive_response_headers", info) as step:
            status, headers, extensions = await self._read_response(timeouts.get("read"))
            step.return_value = (
                extensions["http_version"],
                status,
                extensions["reason_phrase"],
                headers,
            )
        return status, headers, extensions

    def _target(self, request: Request) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The request target and header fields: absolute form and the proxy's headers
        added for a forward proxy (RFC 9112 §3.2.2), else origin form and the request's.
        """
        fields = request.headers
        if self._proxy_headers is None:
            return request.target, fields
        target = request.scheme + b"://" + request.authority + request.target
        return target, [*fields, *self._proxy_headers]

    def _request_head(self, request: Request) -> tuple[bytes, int, bool]:
        """The request head, checked; with the body's Content-Length (or -1) and chunking."""
        method = request.method
        target, fields = self._target(request)
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        length, chunked, hosts = -1, False, 0
        self._no_body = method == b"HEAD"
        self._connect = method == b"CONNECT"
        self._upgrade = False
        for name, value in fields:
            lower = name.lower()
            if lower in FRAMING:
                if lower == b"content-length":
                    if length >= 0:
                        msg = "the request has more than one Content-Length header"
                        raise LocalProtocolError(msg)
                    if not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
                        msg = "the request's Content-Length is not a number of bytes"
                        raise LocalProtocolError(msg)
                    length = int(value)
                elif lower == b"transfer-encoding":
                    if chunked or value.strip(b" \t").lower() != b"chunked":
                        msg = (
                            "the request's Transfer-Encoding must be one header saying "
                            "'chunked' (httpool, like h11, frames no other coding)"
                        )
                        raise LocalProtocolError(msg)
                    chunked = True
                elif lower == b"host":
                    hosts += 1
                elif lower == b"connection":
                    value_lower = value.lower()  # (usually "keep-alive": no list to make)
                    if value_lower.find(b"close") >= 0 and b"close" in [
                        p.strip() for p in value_lower.split(b",")
                    ]:
                        self._keep = False
                else:
                    self._upgrade = True
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        if (
            hosts != 1
            or (chunked and length >= 0)
            or REQUEST_HEAD.fullmatch(head) is None
            or head.count(b"\n") != len(fields) + 2  # a line break inside a value
        ):
            _refuse_head(request, method, hosts, both=chunked and length >= 0)
        return head, length, chunked

    async def _write(
        self,
        request: Request,
        head: bytes | None,
        length: int,
        chunked: bool,
        seconds: float | None,
    ) -> None:
        """Write `head` (if not yet written) and the body; never a byte past its length."""
        content = request.body
        if not isinstance(content, bytes):
            await self._write_stream(content, head, length, chunked, seconds)
        elif chunked or len(content) != max(length, 0):
            await self._write_stream(once(content), head, length, chunked, seconds)
        elif head is None:  # written already (the `trace` extension's steps)
            if content:
                await self._write_large(content, seconds)
        elif len(content) <= COALESCE:  # a body in memory, of its declared length
            await self._stream.write(head + content if content else head, seconds)
        else:
            await self._stream.write(head, seconds)
            await self._write_large(content, seconds)

    async def _write_stream(
        self,
        body: AsyncIterable[bytes],
        head: bytes | None,
        length: int,
        chunked: bool,
        seconds: float | None,
    ) -> None:
        """Write the body chunk by chunk as the request's stream gives it.

        A small head and first chunk go out in one write; a large chunk goes out in
        slices, so an upload is never copied whole.
        """
        write = self._stream.write
        pending = head
        sent = 0
        async for chunk in body:
            size = len(chunk)
            if not size:
                continue
            if chunked:
                if size <= COALESCE:
                    data = b"%x\r\n%b\r\n" % (size, chunk)
                    await write(data if pending is None else pending + data, seconds)
                else:
                    line = b"%x\r\n" % size
                    await write(line if pending is None else pending + line, seconds)
                    await self._write_large(chunk, seconds)
                    await write(b"\r\n", seconds)
                pending = None
                continue
            sent += size
            if sent > length:
                raise _too_long(length)
            if pending is not None:
                if size <= COALESCE:
                    await write(pending + chunk, seconds)
                    pending = None
                    continue
                await write(pending, seconds)
                pending = None
            await self._write_large(chunk, seconds)
        if chunked:
            await write(b"0\r\n\r\n" if pending is None else pending + b"0\r\n\r\n", seconds)
            return
        if pending is not None:
            await write(pending, seconds)
        if sent < length:
            msg = (
                f"the request body ended after {sent} bytes, short of its Content-Length "
                f"of {length}; the connection is closed"
            )
            raise LocalProtocolError(msg)

    async def _write_large(self, data: bytes, seconds: float | None) -> None:
        if len(data) <= WRITE_SLICE:
            await self._stream.write(data, seconds)
            return
        for start in range(0, len(data), WRITE_SLICE):
            await self._stream.write(data[start : start + WRITE_SLICE], seconds)

    # -- responses -----------------------------------------------------------------------

    async def _read_response(
        self, seconds: float | None
    ) -> tuple[int, list[tuple[bytes, bytes]], dict[str, Any]]:
        """Read the head of the final response (skipping 1xx) and set up its body."""
        budget = self._max_head
        while True:
            block, used = await self._read_head_block(seconds, budget)
            budget -= used
            minor, status, reason, headers = parse_head(block, self._max_headers)
            headers, length, chunked, close = check_framing(headers)
            if status >= 200 or status == 101:
                break
            if chunked or length:
                msg = f"a {status} (1xx) response declares a body; 1xx responses have none"
                raise _remote(msg)
        self._ascii_head = block.isascii()
        extensions: dict[str, Any] = {
            "http_version": VERSIONS[minor],
            "reason_phrase": reason,
            "network_stream": self._stream,
        }
        if close or not minor:
            self._keep = False  # HTTP/1.0 is never kept alive (as in h11)
        if status == 101 or (self._connect and status < 300):
            if status == 101 and not self._upgrade:
                msg = "the server switched protocols (101) though the request asked for no upgrade"
                raise _remote(msg)
            extensions["network_stream"] = _Upgraded(self._stream, self._take())
            self._keep = False  # the stream is the caller's now: never back to the pool
            self._mode = DONE
        elif self._no_body or status == 204 or status == 304:  # noqa: PLR1714
            self._finish()
        else:
            self._start_body(length, chunked)
        return status, headers, extensions

    def _start_body(self, length: int | None, chunked: bool) -> None:
        """Set up the reading of a body framed by `length` or `chunked` (or the end)."""
        if chunked:
            if length is not None:
                self._keep = False  # RFC 9112 §6.3: chunked wins, but do not reuse
            self._mode, self._left, self._crlf, self._trailers = CHUNKED, 0, 0, False
        elif length is not None:
            buf, pos = self._buf, self._pos
            if len(buf) - pos >= length:  # the whole body is here: the connection is free now
                self._ready = bytes(buf[pos : pos + length])
                self._pos = pos + length
                self._finish()
            else:
                self._mode, self._left, self._expected = LENGTH, length, length
        else:
            self._mode = TO_EOF  # the body ends when the server closes
            self._keep = False

    def _take(self) -> bytes:
        """All bytes buffered and not yet consumed (the buffer is emptied)."""
        buf, pos = self._buf, self._pos
        self._buf, self._pos, self._scan = b"", 0, 0
        return bytes(buf[pos:]) if pos or type(buf) is not bytes else buf

    async def _read_head_block(self, seconds: float | None, budget: int) -> tuple[bytes, int]:
        """Read up to the empty line that ends a response head; (head, bytes consumed)."""
        buf: bytes | bytearray = self._take()
        scan = 0
        while True:
            if buf:
                if buf[:5] != b"HTTP/"[: len(buf)]:
                    msg = f"malformed status line {_show(buf)}: a response starts with HTTP/1.1"
                    raise _remote(msg)
                match = BLANK_LINE.search(buf, scan)
                if match is not None:
                    end = match.end()
                    if end > budget:
                        break
                    self._buf, self._pos = buf, end
                    return bytes(buf[: match.start() + 1]), end
                if len(buf) > budget:
                    break
                scan = max(0, len(buf) - 2)
            data = await self._stream.read(READ_SIZE, seconds)
            if not data:
                if not self._got_bytes:
                    msg = "Server disconnected without sending a response."
                    raise _remote(msg)
                msg = "the server closed the connection in the middle of a response head"
                raise _remote(msg)
            self._got_bytes = True
            if not buf:
                buf = data
            else:
                if type(buf) is bytes:
                    buf = bytearray(buf)
                buf += data
        msg = (
            f"the response head is larger than max_head_size={self._max_head} bytes; "
            "raise PoolTransport(max_head_size=...) if the server is trusted"
        )
        raise _remote(msg)

    def _finish(self) -> None:
        """The body is complete: reusable only if no byte is left over."""
        self._mode = DONE
        if len(self._buf) > self._pos:  # a byte no response consumed
            self._keep = False

    async def _read_body(self, seconds: float | None) -> bytes:
        """The next piece of a body framed by its length or the end; b"" at its end."""
        mode = self._mode
        if mode == LENGTH:
            buf = self._take()
            if not buf:
                buf = await self._stream.read(READ_SIZE, seconds)
                if not buf:
                    got = self._expected - self._left
                    msg = (
                        "peer closed connection without sending complete message body "
                        f"(received {got} bytes, expected {self._expected})"
                    )
                    raise _remote(msg)
            left = self._left
            if len(buf) < left:
                self._left = left - len(buf)
                return buf
            self._left = 0
            if len(buf) > left:
                self._buf, self._pos = buf, left
                buf = buf[:left]
            self._finish()
            return buf
        if mode == TO_EOF:
            buf = self._take()
            if buf:
                return buf
            buf = await self._stream.read(READ_SIZE, seconds)
            if not buf:
                self._mode = DONE
            return buf
        return b""

    async def _read_chunked(self, seconds: float | None) -> bytes:
        """The next piece of a chunked body (h11's rules); b"" at its end.

        Called when `_parse_chunked` found nothing more in the buffer: reads first.
        """
        while True:
            data = await self._stream.read(READ_SIZE, seconds)
            if not data:
                msg = (
                    "peer closed connection without sending complete message body "
                    "(incomplete chunked read)"
                )
                raise _remote(msg)
            buf, pos = self._buf, self._pos
            if pos >= len(buf):
                self._buf, self._pos, self._scan = data, 0, 0
            else:
                if isinstance(buf, bytearray):
                    del buf[:pos]
                else:
                    buf = bytearray(buf[pos:])
                buf += data
                scan = self._scan - pos
                self._buf, self._pos, self._scan = buf, 0, scan if scan > 0 else 0
            piece = self._parse_chunked()
            if piece is not None:
                return piece

    def _parse_chunked(self) -> bytes | None:
        """Parse what is buffered: the data of the chunks in it, b"" at the end, or None.

        None asks for another read. Positions move along the buffer (nothing is sliced off
        it), so a read holding many small chunks is parsed in linear time, and their data
        comes out as one piece.
        """
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return None  # every state of a chunked body waits for at least one more byte
        pieces: list[bytes | bytearray] = []
        if not (self._left or self._crlf or self._trailers):  # whole chunks, the usual case
            pos = _whole_chunks(buf, pos, pieces)
            if pieces and pos >= len(buf):  # all of it: no partial state to keep
                self._pos = pos
                return bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)
        while True:
            if self._left:  # in a chunk's data
                pos = self._chunk_data(buf, pos, pieces)
                if pos >= len(buf):
                    break
            if self._crlf:  # the CRLF that ends a chunk's data (it may come split)
                pos = self._chunk_end(buf, pos)
                if self._crlf:
                    break
            if self._trailers:
                done = self._parse_trailers(buf, pos)
                data = b"".join(pieces)
                return data if data or done else None
            after = self._chunk_size(buf, pos)
            if after < 0:
                break
            pos = after
        self._pos = pos
        if not pieces:
            return None
        return bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)

    def _chunk_data(self, buf: bytes | bytearray, pos: int, pieces: list[bytes | bytearray]) -> int:
        """Add what is buffered of the current chunk's data to `pieces`; the position after."""
        have, left = len(buf) - pos, self._left
        if have < left:
            if have:
                pieces.append(buf[pos:] if pos else buf)
            self._left = left - have
            return len(buf)
        pieces.append(buf[pos : pos + left] if pos or have > left else buf)
        self._left, self._crlf = 0, 2
        return pos + left

    def _chunk_size(self, buf: bytes | bytearray, pos: int) -> int:
        """Parse a chunk-size line: the position after it, or -1 if it is not all here."""
        scan = self._scan
        end = buf.find(b"\r\n", scan if scan > pos else pos)
        if end < 0:
            if len(buf) - pos > self._max_head:
                msg = f"a chunk-size line is longer than max_head_size={self._max_head}"
                raise _remote(msg)
            self._scan = len(buf) - 1 if len(buf) - 1 > pos else pos
            return -1
        match = CHUNK_LINE.fullmatch(buf, pos, end)
        if match is None:
            msg = f"malformed chunked body: chunk-size line {_show(buf[pos:end])}"
            raise _remote(msg)
        size = int(match[1], 16)
        if size:
            self._left = size
        else:
            self._trailers = True
        return end + 2

    def _chunk_end(self, buf: bytes | bytearray, pos: int) -> int:
        """Check what is buffered of the CRLF after a chunk's data; the position after it."""
        need = b"\r\n"[2 - self._crlf :]
        got = buf[pos : pos + len(need)]
        if got != need[: len(got)]:
            msg = f"malformed chunked body: {_show(got)} where a chunk ends with CRLF"
            raise _remote(msg)
        self._crlf -= len(got)
        return pos + len(got)

    def _parse_trailers(self, buf: bytes | bytearray, pos: int) -> bool:
        """Check the trailer section (then dropped); True at the end of the body."""
        if buf[pos : pos + 1] == b"\n":
            pos += 1
        elif buf[pos : pos + 2] == b"\r\n":
            pos += 2
        else:
            match = BLANK_LINE.search(buf, max(pos, self._scan))
            if match is None:
                if len(buf) - pos > self._max_head:
                    msg = f"the trailer section is larger than max_head_size={self._max_head}"
                    raise _remote(msg)
                self._pos, self._scan = pos, max(pos, len(buf) - 2)
                return False
            lines = bytes(buf[pos : match.start()]).split(b"\n")
            parse_fields([line[:-1] if line.endswith(b"\r") else line for line in lines])
            pos = match.end()
        self._pos = pos
        self._trailers = False
        self._finish()
        return True

    async def _response_closed(self) -> None:
        self._ready = b""  # an unread body is dropped with its response
        if (
            self._state == ACTIVE
            and self._mode == DONE
            and self._keep
            and len(self._buf) <= self._pos  # no byte left over
        ):
            self._buf, self._pos = b"", 0  # an idle connection holds no read buffer
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
        """Idle, reusable, and with no byte of anything after the last response."""
        return self._state == IDLE and len(self._buf) <= self._pos

    def has_expired(self) -> bool:
        """Past its keep-alive expiry, or readable while idle (closed, or sent stray bytes)."""
        if self._expire_at is not None and time.monotonic() > self._expire_at:
            return True
        return self._state == IDLE and (
            len(self._buf) > self._pos or bool(self._stream.get_extra_info("is_readable"))
        )

    def is_idle(self) -> bool:
        """No request on it."""
        return self._state == IDLE

    def is_closed(self) -> bool:
        """Closed for good."""
        return self._state == CLOSED


def _whole_chunks(buf: bytes | bytearray, pos: int, pieces: list[bytes | bytearray]) -> int:
    """Add the data of the whole chunks buffered from `pos` to `pieces`; the position after.

    Stops before the last chunk, a chunk not all buffered, or anything odd: the careful
    parser of `HTTP11Connection._parse_chunked` goes on from there.
    """
    chunk_at = CHUNK_FAST.match
    while (found := chunk_at(buf, pos)) is not None:
        start = found.end()
        end = start + int(found[1], 16)
        if end == start or buf[end : end + 2] != b"\r\n":
            break
        pieces.append(buf[start:end])
        pos = end + 2
    return pos


def _too_long(length: int) -> LocalProtocolError:
    """The error for a request body longer than its framing allows (nothing more is sent)."""
    if length < 0:
        msg = "the request has a body but neither Content-Length nor Transfer-Encoding: chunked"
    else:
        msg = (
            "Too much data for declared Content-Length: the request body is longer than "
            f"its Content-Length of {length} bytes; nothing past it was sent"
        )
    return LocalProtocolError(msg)


def _refuse_head(request: Request, method: bytes, hosts: int, *, both: bool) -> None:
    """Raise the error that says what is wrong with a request head."""
    if hosts != 1:
        msg = f"the request has {hosts} Host headers; HTTP/1.1 needs exactly one"
        raise LocalProtocolError(msg)
    if both:
        msg = (
            "the request has both Content-Length and Transfer-Encoding; send one of them "
            "(a server may frame the body by either)"
        )
        raise LocalProtocolError(msg)
    if not TOKEN.fullmatch(method):
        msg = f"Illegal method {request.method_text!r}: a method is a token"
        raise LocalProtocolError(msg)
    if CONTROL.search(request.target) or b" " in request.target:
        msg = "the request target has a space or a control character"
        raise LocalProtocolError(msg)
    for name, value in request.headers:
        if not TOKEN.fullmatch(name):
            msg = f"Illegal header name {_show(name)}: a header name is a token"
            raise LocalProtocolError(msg)
        if CONTROL.search(value):
            msg = (
                f"Illegal header value of {_show(name)}: a control character (CR, LF, NUL "
                "or another below 0x20 but tab) in a header value"
            )
            raise LocalProtocolError(msg)
    msg = "the request head is malformed"  # pragma: no cover - every case is named above
    raise LocalProtocolError(msg)


class _Upgraded:
    """The stream after `101 Switching Protocols`: bytes read past the head come first."""

    def __init__(self, stream: NetworkStream, leading: bytes) -> None:
        self._stream = stream
        self._leading = leading

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        if self._leading:
            data, self._leading = self._leading[:max_bytes], self._leading[max_bytes:]
            return data
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> NetworkStream:
        return await self._stream.start_tls(ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Body:
    """The response body of an `HTTP11Connection`, read as it is iterated."""

    __slots__ = (
        "_closed", "_conn", "_request", "_started", "_step", "_timeout", "_trace", "ascii_head",
    )  # fmt: skip

    def __init__(
        self,
        conn: HTTP11Connection,
        timeout: float | None,
        trace: Trace | None,
        request: Request | None,
    ) -> None:
        self._conn = conn
        self._timeout = timeout
        self._trace = trace
        self._request = request
        self.ascii_head = conn._ascii_head
        self._step: _Traced | None = None  # the traced `receive_response_body` while it runs
        self._started = self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if self._trace is not None and not self._started:
            self._started = True
            info: dict[str, Any] = {"request": self._request}
            self._step = await _Traced(self._trace, "receive_response_body", info).__aenter__()
        piece = conn._ready
        if piece:
            conn._ready = b""
            return piece
        mode = conn._mode
        if mode != DONE:
            try:
                if mode != CHUNKED:
                    piece = await conn._read_body(self._timeout)
                else:  # what is buffered first, without a coroutine
                    parsed = conn._parse_chunked()
                    piece = await conn._read_chunked(self._timeout) if parsed is None else parsed
            except BaseException as exc:
                await self._end_step(exc)
                await self.aclose()  # a failed or cancelled read: the connection is closed
                raise
            if piece:
                return piece
        await self._end_step(None)
        raise StopAsyncIteration

    async def _end_step(self, exc: BaseException | None) -> None:
        step, self._step = self._step, None
        if step is not None:
            await step.__aexit__(None if exc is None else type(exc), exc, None)

    async def aclose(self) -> None:
        """Give the connection back (reusable only if the body was read to its end)."""
        if not self._closed:
            self._closed = True
            if self._trace is None:
                await self._conn._response_closed()
            else:
                async with _Traced(self._trace, "response_closed", {}):
                    await self._conn._response_closed()
