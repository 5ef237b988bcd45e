"""HTTP/1.1 attacks and lenient servers, against a raw asyncio server on 127.0.0.1.

Each case runs through `PoolTransport`; where httpx's stock transport (h11) behaves
correctly on the same bytes it runs as the control, so a test that only httpool passed
would show up as a difference from h11. The server records every byte it receives, so
the smuggling tests show that nothing past the declared length ever reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import h11
import httpx
import pytest

from httpool._engine._transport import PoolTransport

from .conftest import assert_clean
from .servers import _LoopbackServer

pytestmark = pytest.mark.anyio

Responder = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]]
# httpcore lets h11's own error out of a request body it refuses (the stock control only)
REFUSED = (httpx.LocalProtocolError, h11.LocalProtocolError)


class ScriptedServer(_LoopbackServer):
    """Answers each request by its path from `routes` (raw bytes or a coroutine).

    Every byte received is kept in `raw` (one bytearray per connection) and every request
    parsed from them in `requests`. A path missing from `routes` gets a 200 whose body is
    the path. `close` lists the paths after whose answer the server closes. With `sink`
    set, request bodies are counted into `sunk` and dropped, and `raw` is not kept.
    """

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, Responder] = {}
        self.close: set[str] = set()
        self.raw: list[bytearray] = []
        self.requests: list[tuple[bytes, bytes, bytes]] = []  # method, path, body
        self.sink = False
        self.sunk = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accept(writer)
        raw = bytearray()
        self.raw.append(raw)
        pending = bytearray()
        try:
            while True:
                async with asyncio.timeout(5):
                    data = await reader.read(65536)
                if not data:
                    return
                if self.sink:
                    data = await self._sink(reader, data)
                raw += data
                pending += data
                while (request := _take_request(pending)) is not None:
                    self.requests.append(request)
                    path = request[1].decode()
                    answer = self.routes.get(path, _ok(path.encode()))
                    if isinstance(answer, bytes):
                        writer.write(answer)
                        await writer.drain()
                    else:
                        await answer(writer)
                    if path in self.close:
                        return
        except (ConnectionError, TimeoutError):
            return
        finally:
            self._gone(writer)
            writer.close()

    async def _sink(self, reader: asyncio.StreamReader, data: bytes) -> bytes:
        """Count a request body and drop it; return the head with an empty body."""
        while b"\r\n\r\n" not in data:
            data += await reader.read(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        self.sunk = len(rest)
        while self.sunk < length:
            chunk = await reader.read(65536)
            if not chunk:
                break
            self.sunk += len(chunk)
        return head.replace(b"ength: %d" % length, b"ength: 0") + b"\r\n\r\n"


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


def _take_request(buf: bytearray) -> tuple[bytes, bytes, bytes] | None:
    """Cut one whole request (Content-Length or chunked body) off the front of `buf`."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    method, target, _ = [*lines[0].split(b" ", 2), b"", b""][:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    start = end + 4
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body, pos = b"", start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(buf[pos:line_end].split(b";")[0], 16)
            if len(buf) < line_end + 2 + size + 2:
                return None
            body += buf[line_end + 2 : line_end + 2 + size]
            pos = line_end + 2 + size + 2
            if not size:
                break
        del buf[:pos]
        return method, target, body
    length = int(headers.get(b"content-length", b"0"))
    if len(buf) < start + length:
        return None
    body = bytes(buf[start : start + length])
    del buf[: start + length]
    return method, target, body


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    """A scripted raw HTTP/1.1 server on 127.0.0.1, stopped after the test."""
    server = ScriptedServer()
    await server.start()
    yield server
    await server.aclose()


TRANSPORTS: dict[str, Callable[..., httpx.AsyncBaseTransport]] = {
    "httpool": PoolTransport,
    "stock": httpx.AsyncHTTPTransport,
}


@pytest.fixture(params=["httpool", "stock"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which transport runs the case: httpool's, or httpx's stock one as the control."""
    return str(request.param)


@contextlib.asynccontextmanager
async def client_for(
    kind: str, server: ScriptedServer, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    transport = TRANSPORTS[kind](**options)
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
        yield client


async def wait_for(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)


def after_declared_length(raw: bytes) -> bytes:
    """The bytes a server received past the first request's head and declared body."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return b""
    length = 0
    for line in raw[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return raw[end + 4 + length :]


# -- request smuggling and framing -------------------------------------------------------


async def test_body_longer_than_content_length_is_never_sent(
    kind: str, server: ScriptedServer
) -> None:
    """A 200 KB body under `Content-Length: 10`: nothing past 10 bytes reaches the server."""
    async with client_for(kind, server) as client:
        smuggled = b"x" * 10 + b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n" * 6000
        with pytest.raises(REFUSED, match="Content-Length"):
            await client.post("/upload", content=smuggled, headers={"Content-Length": "10"})
        await wait_for(lambda: server.open == 0)
    assert server.open == 0
    assert all(after_declared_length(bytes(raw)) == b"" for raw in server.raw)
    assert [r[1] for r in server.requests] in ([], [b"/upload"])


async def test_streamed_body_longer_than_content_length_is_cut(
    kind: str, server: ScriptedServer
) -> None:
    """A streamed body that outgrows its Content-Length fails before the extra is written."""

    async def parts() -> AsyncIterator[bytes]:
        yield b"a" * 8
        yield b"b" * 40_000  # past the declared 10 bytes
        yield b"c" * 40_000

    async with client_for(kind, server) as client:
        with pytest.raises(REFUSED, match="Content-Length"):
            await client.post("/upload", content=parts(), headers={"Content-Length": "10"})
        await wait_for(lambda: server.open == 0)
    assert len(server.raw) == 1
    raw = bytes(server.raw[0])
    assert raw.endswith(b"\r\n\r\n" + b"a" * 8)  # the head and the 8 bytes that fit
    assert after_declared_length(raw) == b""
    assert server.requests == []  # the request never completed: the server saw no request


async def test_large_streamed_body_past_its_length_is_never_flushed(server: ScriptedServer) -> None:
    """Four 32 KB chunks under `Content-Length: 10`: no chunk is written, not even in part."""

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n".ljust(32_768, b"z")

    async with client_for("httpool", server) as client:
        with pytest.raises(httpx.LocalProtocolError):
            await client.post("/upload", content=parts(), headers={"Content-Length": "10"})
        await wait_for(lambda: server.open == 0)
    assert all(after_declared_length(bytes(raw)) == b"" for raw in server.raw)
    assert server.requests == []


async def test_body_shorter_than_content_length_fails_and_closes(
    kind: str, server: ScriptedServer
) -> None:
    """A body shorter than its Content-Length fails and the connection is closed."""

    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"

    async with client_for(kind, server) as client:
        with pytest.raises(REFUSED):
            await client.post("/upload", content=parts(), headers={"Content-Length": "10"})
        await wait_for(lambda: server.open == 0)
        assert server.open == 0
        assert (await client.get("/after")).text == "/after"
    assert [r[1] for r in server.requests] == [b"/after"]


# (headers, whether h11 refuses them too)
BAD_HEADERS: list[tuple[list[tuple[str, str]], bool]] = [
    ([("Content-Length", "3"), ("Content-Length", "4")], True),
    ([("Content-Length", "3"), ("Content-Length", "3")], False),  # h11 merges them
    ([("Content-Length", "3"), ("Transfer-Encoding", "chunked")], False),  # h11 sends both
    ([("Transfer-Encoding", "xchunked")], True),
    ([("Transfer-Encoding", "gzip, chunked")], True),
    ([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], True),
    ([("Host", "a.example"), ("Host", "b.example")], True),
    ([("X-Evil", "a\r\nX-Injected: 1")], True),
    ([("X-Evil", "a\nb")], True),
    ([("X-Evil", "a\x00b")], True),
    ([("X-Evil", "a\x01b")], False),  # h11 lets other control characters through
    ([("X-Evil", "a\x7fb")], False),
    ([("X-Evil", "a\x1bb")], False),
    ([("Bad Name", "1")], True),
    ([("X-Evil\x01", "1")], True),
]


@pytest.mark.parametrize(
    ("which", "headers"),
    [("httpool", headers) for headers, _ in BAD_HEADERS]
    + [("stock", headers) for headers, h11_refuses in BAD_HEADERS if h11_refuses],
)
async def test_ambiguous_or_injected_headers_are_refused(
    which: str, server: ScriptedServer, headers: list[tuple[str, str]]
) -> None:
    """Ambiguous framing, two Hosts and control characters: refused before a byte is sent."""

    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"

    chunked = any(name == "Transfer-Encoding" for name, _ in headers)
    content: Any = parts() if chunked else b"abc"
    async with client_for(which, server) as client:
        with pytest.raises(REFUSED):
            await client.post("/x", content=content, headers=headers)
        assert (await client.get("/after")).text == "/after"
    assert b"".join(server.raw).count(b"/x") == 0
    assert [r[1] for r in server.requests] == [b"/after"]


async def test_upload_is_not_copied_whole(server: ScriptedServer) -> None:
    """A 16 MB upload adds well under one body's size to the client's memory."""
    body = b"u" * (16 * 1024 * 1024)
    server.routes["/upload"] = _ok(b"done")
    server.sink = True
    async with client_for("httpool", server) as client:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            response = await client.post("/upload", content=body)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert response.text == "done"
    assert server.sunk == len(body)
    assert peak - before < len(body) // 4, f"{(peak - before) / 2**20:.1f} MiB extra"


# -- response heads: limits --------------------------------------------------------------


async def test_huge_header_line_is_refused(kind: str, server: ScriptedServer) -> None:
    """A 1 MB header line fails with RemoteProtocolError and the connection is dropped."""
    server.routes["/big"] = b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 1_000_000 + b"\r\n\r\n"
    async with client_for(kind, server) as client:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await client.get("/big")
        if kind == "httpool":
            assert "max_head_size=102400" in str(info.value)
        assert (await client.get("/after")).text == "/after"


async def test_too_many_headers_are_refused(kind: str, server: ScriptedServer) -> None:
    """100,000 header lines fail with RemoteProtocolError (h11: its 100 KiB buffer)."""
    server.routes["/many"] = b"HTTP/1.1 200 OK\r\n" + b"a: b\r\n" * 100_000 + b"\r\n"
    async with client_for(kind, server) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/many")
        assert (await client.get("/after")).text == "/after"


async def test_header_count_limit_is_settable(server: ScriptedServer) -> None:
    """`max_headers` bounds the header lines of a head that fits in `max_head_size`."""
    server.routes["/many"] = _ok(b"x").replace(b"\r\n\r\n", b"\r\n" + b"a: b\r\n" * 150 + b"\r\n")
    async with client_for("httpool", server) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="max_headers=100"):
            await client.get("/many")
    async with client_for("httpool", server, max_headers=200) as client:
        response = await client.get("/many")
        assert len(response.headers.get_list("a")) == 150


async def test_head_size_limit_is_settable(server: ScriptedServer) -> None:
    """`max_head_size` lowers (or raises) the bound on a response head."""
    server.routes["/mid"] = _ok(b"x").replace(b"OK\r\n", b"OK\r\nX-Mid: " + b"m" * 8000 + b"\r\n")
    async with client_for("httpool", server, max_head_size=4096) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="max_head_size=4096"):
            await client.get("/mid")
    async with client_for("httpool", server) as client:
        assert (await client.get("/mid")).headers["x-mid"] == "m" * 8000


@pytest.mark.parametrize("value", [0, -1, 1.5, "100"])
def test_limits_must_be_positive_whole_numbers(value: Any) -> None:
    """A limit that is not a positive int is refused with a message that names it."""
    with pytest.raises(ValueError, match="max_head_size"):
        PoolTransport(max_head_size=value)
    with pytest.raises(ValueError, match="max_headers"):
        PoolTransport(max_headers=value)


async def _trickle_head(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n")
    for i in range(2000):  # ~2 MB at most; the client gives up long before
        writer.write(b"X-Trickle-%d: %s\r\n" % (i, b"t" * 1000))
        await writer.drain()
        await asyncio.sleep(0.001)


async def test_endless_trickled_head_is_bounded(kind: str, server: ScriptedServer) -> None:
    """A head that never ends, sent a line a millisecond, fails at the head limit.

    Bytes keep arriving, so no read times out: the bound on the head ends it.
    """
    server.routes["/trickle"] = _trickle_head
    timeout = httpx.Timeout(5.0, read=1.0)
    async with client_for(kind, server) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/trickle", timeout=timeout)


async def _stall_head(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Part: 1\r\n")
    await writer.drain()
    await asyncio.sleep(3)


async def test_stalled_head_times_out(kind: str, server: ScriptedServer) -> None:
    """A head that stops half way raises ReadTimeout after the read timeout."""
    server.routes["/stall"] = _stall_head
    async with client_for(kind, server) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/stall", timeout=httpx.Timeout(5.0, read=0.2))


async def test_long_reason_phrase_in_small_pieces(kind: str, server: ScriptedServer) -> None:
    """A 60 KB reason phrase sent in 1 KB writes is read whole."""

    async def reason(writer: asyncio.StreamWriter) -> None:
        data = b"HTTP/1.1 200 " + b"r" * 60_000 + b"\r\nContent-Length: 2\r\n\r\nok"
        for start in range(0, len(data), 1000):
            writer.write(data[start : start + 1000])
            await writer.drain()
            await asyncio.sleep(0)

    server.routes["/reason"] = reason
    async with client_for(kind, server) as client:
        response = await client.get("/reason")
    assert response.reason_phrase == "r" * 60_000
    assert response.text == "ok"


# -- response framing --------------------------------------------------------------------

REFUSED_RESPONSES = {
    "1xx-with-body": b"HTTP/1.1 199 Odd\r\nContent-Length: 3\r\n\r\nabc" + _ok(b"final"),
    "102-with-body": b"HTTP/1.1 102 Processing\r\nContent-Length: 5\r\n\r\nhello" + _ok(b"f"),
    "gzip-then-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"2\r\nok\r\n0\r\n\r\n",
    "chunked-then-gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nok",
    "gzip-alone": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
    "xchunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "two-transfer-encodings": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "conflicting-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "status-099": b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok",
    "rtsp": b"RTSP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "ice": b"ICE/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "leading-blank-line": b"\r\n" + _ok(b"ok"),
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
}


@pytest.mark.parametrize("name", sorted(REFUSED_RESPONSES))
async def test_bad_framing_is_refused(kind: str, server: ScriptedServer, name: str) -> None:
    """Responses h11 refuses are refused, with an error that says what was wrong."""
    server.routes["/bad"] = REFUSED_RESPONSES[name]
    server.close.add("/bad")
    async with client_for(kind, server) as client:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await client.get("/bad")
        if kind == "httpool":
            assert "malformed response" not in str(info.value)  # the old, nameless message
        assert (await client.get("/after")).text == "/after"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("status-600", b"HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok"),
        ("http-2.0", b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ("control-char", b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 2\r\n\r\nok"),
    ],
)
async def test_stricter_than_h11(server: ScriptedServer, name: str, data: bytes) -> None:
    """What httpool refuses and h11 accepts (listed in test_h11_differential.DIFFERENCES)."""
    server.routes["/odd"] = data
    async with client_for("httpool", server) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/odd")
    async with client_for("stock", server) as client:
        assert (await client.get("/odd")).text == "ok"


async def test_bytes_after_a_response_never_reach_the_next_request(server: ScriptedServer) -> None:
    """A response followed by a forged one: the next request gets its own answer.

    httpx's stock transport fails this one: h11 keeps the stray bytes and parses them as
    the next response.
    """
    server.routes["/a"] = _ok(b"a") + _ok(b"forged")
    limits = httpx.Limits(max_connections=1)
    async with client_for("httpool", server, limits=limits) as client:
        assert (await client.get("/a")).text == "a"
        assert (await client.get("/b")).text == "/b"
        assert (await client.get("/c")).text == "/c"
        transport = client._transport
        assert isinstance(transport, PoolTransport)
        assert_clean(transport)
    assert server.accepted == 2  # /a's connection was not reused; /b and /c share one


async def test_stray_crlf_after_a_chunked_response_is_not_reused(server: ScriptedServer) -> None:
    """Even a stray CRLF after a chunked body keeps the connection out of the pool."""
    server.routes["/a"] = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n\r\n"
    )
    async with client_for("httpool", server) as client:
        assert (await client.get("/a")).text == "a"
        assert (await client.get("/b")).text == "/b"
    assert server.accepted == 2


# -- lenient cases h11 accepts -----------------------------------------------------------


async def test_head_without_length_keeps_the_connection(kind: str, server: ScriptedServer) -> None:
    """HEAD, 204 and 304 answered with neither Content-Length nor Transfer-Encoding end at
    the head, and the connection is reused (nginx does this for gzipped resources)."""
    server.routes["/health"] = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
    server.routes["/204"] = b"HTTP/1.1 204 No Content\r\n\r\n"
    server.routes["/304"] = b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"
    async with client_for(kind, server) as client:
        for _ in range(3):
            assert (await client.head("/health")).status_code == 200
        assert (await client.get("/204")).status_code == 204
        assert (await client.get("/304")).status_code == 304
        assert (await client.get("/after")).text == "/after"
    assert server.accepted == 1


async def test_header_values_are_stripped(kind: str, server: ScriptedServer) -> None:
    """Whitespace around a value is not part of it: a Location ending in a tab redirects."""
    server.routes["/from"] = (
        b"HTTP/1.1 302 Found\r\nLocation: /to\t\r\nContent-Type:  text/plain \r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    async with client_for(kind, server) as client:
        response = await client.get("/from", follow_redirects=True)
        assert response.text == "/to"
        first = response.history[0]
        assert first.headers["content-type"] == "text/plain"
        assert first.headers["location"] == "/to"


async def test_obs_fold_is_unfolded(kind: str, server: ScriptedServer) -> None:
    """A folded header line (RFC 9112 §5.2) is joined with one space."""
    server.routes["/fold"] = (
        b"HTTP/1.1 200 OK\r\nX-Folded: first\r\n  second\r\n\tthird\r\nContent-Length: 2\r\n\r\nok"
    )
    async with client_for(kind, server) as client:
        response = await client.get("/fold")
    assert response.headers["x-folded"] == "first second third"
    assert response.text == "ok"


async def test_bare_lf_and_duplicate_identical_length(kind: str, server: ScriptedServer) -> None:
    """Bare LF line ends and a repeated identical Content-Length are accepted, as h11 does."""
    server.routes["/lf"] = b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\nok"
    server.routes["/twice"] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"
    server.routes["/listed"] = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"
    async with client_for(kind, server) as client:
        for path in ("/lf", "/twice", "/listed"):
            response = await client.get(path)
            assert response.text == "ok"
            assert response.headers.get_list("content-length") == ["2"]
        assert (await client.get("/after")).text == "/after"
    assert server.accepted == 1


async def test_interim_responses_are_skipped(kind: str, server: ScriptedServer) -> None:
    """100 and 103 (with headers) before the final response are skipped."""
    server.routes["/early"] = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        + _ok(b"final")
    )
    async with client_for(kind, server) as client:
        response = await client.get("/early")
        assert (response.status_code, response.text) == (200, "final")
        assert "link" not in response.headers
        assert (await client.get("/after")).text == "/after"
    assert server.accepted == 1
