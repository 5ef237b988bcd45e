"""httpool's HTTP/1.1 response parsing against h11's, on the same bytes split the same way.

hypothesis writes response byte streams (valid, lenient, malicious), cuts them at random
read boundaries and follows them with nothing, a second response or junk. Each stream is
read by `HTTP11Connection` over an in-memory stream and by `h11.Connection(h11.CLIENT)`
(with httpcore's 100 KiB head limit), the reference nobody here wrote. httpool never
returns a response h11 refuses, never returns a different status, reason, version,
header list or body where both accept, and never keeps a connection with an unconsumed
byte. Where httpool refuses what h11 accepts, the case carries one of the tags of
`DIFFERENCES`, each a deliberate difference with its reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import h11
import httpcore
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from httpool._engine._errors import RemoteProtocolError
from httpool._engine._http11 import MAX_HEAD_SIZE, HTTP11Connection

from .messages import engine_request

DIFFERENCES = {
    "ctl": "a control character other than HTAB in a header value or reason phrase: RFC "
    "9110 §5.5 lets a recipient reject it; h11 accepts 0x01-0x08, 0x0e-0x1f and 0x7f",
    "status_range": "a status code outside 100-599: RFC 9110 §15 defines no other; h11 "
    "accepts 600-999",
    "version": "an HTTP version other than 1.0 and 1.1 (HTTP/2.0 or 0.9 on an HTTP/1.1 "
    "connection): h11 accepts any HTTP/d.d",
    "1xx_body": "a 1xx response that declares Content-Length > 0 or Transfer-Encoding: 1xx "
    "responses have no content (RFC 9110 §15.2); h11 ignores the headers",
}


class StarvedError(Exception):
    """The reader wants more bytes than the server sent (and the server did not close)."""


class FakeStream(httpcore.AsyncNetworkStream):
    """A network stream that returns the given pieces one per read, then EOF or starves."""

    def __init__(self, pieces: list[bytes], eof: bool) -> None:
        self.pieces = deque(pieces)
        self.eof = eof
        self.written: list[bytes] = []
        self.closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if not self.pieces:
            if self.eof:
                return b""
            raise StarvedError
        piece = self.pieces.popleft()
        if len(piece) > max_bytes:
            self.pieces.appendleft(piece[max_bytes:])
            piece = piece[:max_bytes]
        return piece

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.written.append(bytes(buffer))

    async def aclose(self) -> None:
        self.closed = True

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # as a socket: readable with bytes waiting or at EOF
            return bool(self.pieces) or self.eof
        return None


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits on anything (the fake stream answers at once)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the coroutine waited")


@dataclass
class Case:
    """One generated exchange: the request method and the response bytes as read."""

    method: str  # GET, HEAD, or UPGRADE (a GET that asks for a WebSocket upgrade)
    pieces: list[bytes]
    eof: bool
    tags: set[str] = field(default_factory=set)


@dataclass
class Outcome:
    """What a reader made of a case."""

    kind: str  # "ok", "error" or "starved"
    status: int = 0
    reason: bytes = b""
    version: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    reusable: bool = False
    after: bytes = b""  # for a 101: the first bytes of the upgraded stream
    error: str = ""


def request_headers(case: Case) -> list[tuple[str, str]]:
    headers = [("Host", "example.com")]
    if case.method == "UPGRADE":
        headers += [("Connection", "Upgrade"), ("Upgrade", "websocket")]
    return headers


def by_httpool(case: Case) -> Outcome:
    """Read the case with `HTTP11Connection`."""
    stream = FakeStream(case.pieces, case.eof)
    conn = HTTP11Connection(stream, None)
    method = "HEAD" if case.method == "HEAD" else "GET"
    request = httpx.Request(method, "http://example.com/", headers=request_headers(case)[1:])
    try:
        status, headers, body, extensions = run(conn.send(engine_request(request)))
        chunks = []

        async def read_all() -> None:
            chunks.extend([chunk async for chunk in body])
            await body.aclose()

        run(read_all())
    except RemoteProtocolError as exc:
        return Outcome("error", error=str(exc))
    except StarvedError:
        return Outcome("starved")
    after = b""
    if status == 101:  # what the upgraded stream reads first: bytes after the head
        upgraded = extensions["network_stream"]
        while stream.pieces or upgraded._leading:
            after += run(upgraded.read(1_000_000))
    return Outcome(
        "ok",
        status=status,
        reason=extensions["reason_phrase"],
        version=extensions["http_version"],
        headers=list(headers),
        body=b"".join(chunks),
        reusable=conn.is_available() and not conn.has_expired(),
        after=after,
    )


def by_h11(case: Case) -> Outcome:
    """Read the case with h11, as httpcore drives it."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
    method = "HEAD" if case.method == "HEAD" else "GET"
    conn.send(h11.Request(method=method, target="/", headers=request_headers(case)))
    conn.send(h11.EndOfMessage())
    pieces = deque(case.pieces)
    head: h11.Response | h11.InformationalResponse | None = None
    body = b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if pieces:
                    conn.receive_data(pieces.popleft())
                elif case.eof:
                    conn.receive_data(b"")
                else:
                    return Outcome("starved")
                continue
            if isinstance(event, h11.ConnectionClosed):
                return Outcome("error", error="closed before the end")
            if isinstance(event, h11.InformationalResponse) and event.status_code != 101:
                continue
            if isinstance(event, h11.Response | h11.InformationalResponse):
                head = event
                if event.status_code == 101:
                    break
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
    except h11.RemoteProtocolError as exc:
        return Outcome("error", error=str(exc))
    assert head is not None
    trailing, closed = conn.trailing_data
    reusable = (
        conn.our_state is h11.DONE
        and conn.their_state is h11.DONE
        and not trailing
        and not pieces
        and not closed
        and not case.eof
    )
    return Outcome(
        "ok",
        status=head.status_code,
        reason=bytes(head.reason),
        version=b"HTTP/" + head.http_version,
        headers=list(head.headers.raw_items()),
        body=body,
        reusable=reusable,
        after=trailing + b"".join(pieces) if head.status_code == 101 else b"",
    )


# -- the byte streams --------------------------------------------------------------------


def mostly(usual: list[Any], odd: list[Any], weight: int = 10) -> st.SearchStrategy[Any]:
    """Each of `usual` `weight` times as likely as each of `odd`."""
    return st.sampled_from(usual * weight + odd)


EOL = mostly([b"\r\n"], [b"\n"])  # bare LF now and then
NAMES = [b"Content-Type", b"Server", b"X-Request-Id", b"set-cookie", b"Location", b"ETag"]
BAD_NAMES = [b"Bad Name", b"", b"X\x01", b"X "]
VALUES = [(b"text/plain", ""), (b"  padded\t ", ""), (b"", ""), (b"a\tb  c", "")]
VALUES += [(b"caf\xc3\xa9", ""), (b"/next\t", ""), (b'q="a,b"', "")]
ODD_VALUES = [(b"x\x01y", "ctl"), (b"x\x7f", "ctl"), (b"x\x0by", "ctl"), (b"x\x00y", "ctl")]
ODD_VALUES += [(b"x\ry", "ctl")]


@st.composite
def status_line(draw: st.DrawFn, tags: set[str], final: bool) -> bytes:
    version = draw(
        mostly(
            [b"HTTP/1.1"] * 5 + [b"HTTP/1.0"],
            [b"HTTP/2.0", b"HTTP/0.9", b"RTSP/1.0", b"ICE/1.0", b"http/1.1", b"HTTP/1.1 "],
            weight=6,
        )
    )
    if version in (b"HTTP/2.0", b"HTTP/0.9"):
        tags.add("version")
    if final:
        code = draw(mostly([200, 200, 201, 204, 304, 404, 500, 599], [99, 600, 999, 0]))
    else:
        code = draw(st.sampled_from([100, 102, 103, 199]))
    if not 100 <= code <= 599:
        tags.add("status_range")
    reason, tag = draw(
        mostly(
            [(b" OK", ""), (b"", ""), (b" ", ""), (b" Not  Found ", ""), (b" caf\xc3\xa9", "")],
            [(b" a\tb", ""), (b" bad\x01", "ctl"), (b" bad\x7f", "ctl"), (b"\tOK", "")],
        )
    )
    if tag:
        tags.add(tag)
    return bytes(version + b" %03d" % code + reason + draw(EOL))


@st.composite
def header_lines(draw: st.DrawFn, tags: set[str]) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 4))):
        name = draw(mostly(NAMES, BAD_NAMES, weight=8))
        value, tag = draw(mostly(VALUES, ODD_VALUES, weight=8))
        if tag and name not in BAD_NAMES:
            tags.add(tag)
        out += name + b":" + draw(mostly([b" ", b""], [b"\t", b"  "])) + value + draw(EOL)
        if draw(st.integers(0, 14)) == 0:  # obs-fold: a continuation line
            out += draw(st.sampled_from([b" ", b"\t", b"  "])) + b"folded" + draw(EOL)
    if draw(st.integers(0, 49)) == 0:
        out = b" leading-fold" + draw(EOL) + out
    return out


@st.composite
def chunked_body(draw: st.DrawFn, payload: bytes) -> bytes:
    out = b""
    rest = payload
    while rest:
        size = draw(st.integers(1, max(1, len(rest))))
        piece, rest = rest[:size], rest[size:]
        size_text = draw(mostly([b"%x"], [b"%X", b"0%x", b"%x;ext=1", b"%x ", b"%x;q"], weight=12))
        out += size_text % len(piece) + b"\r\n" + piece
        out += draw(mostly([b"\r\n"], [b"\n", b"", b"xx"], weight=30))
    out += draw(mostly([b"0"], [b"000", b"0;end", b"g", b"-1", b""], weight=25)) + b"\r\n"
    out += draw(
        mostly(
            [b"\r\n"],
            [b"\n", b"Trailer-A: 1\r\n\r\n", b"Trailer-A: 1\n\n", b"Bad Trailer\r\n\r\n", b""],
            weight=20,
        )
    )
    return bytes(out)


@st.composite
def final_response(draw: st.DrawFn, tags: set[str]) -> bytes:
    head = draw(status_line(tags, final=True)) + draw(header_lines(tags))
    payload = draw(st.binary(min_size=draw(st.integers(0, 40)), max_size=40))
    framing = draw(mostly(["length", "chunked"], ["both", "none"], weight=5))
    eol = draw(EOL)
    body = payload
    if framing in ("length", "both"):
        declared = len(payload) + draw(mostly([0], [1, -1], weight=20))
        form = draw(
            mostly(
                [b"%d"],
                [b"0%d", b"%d, %d", b"+%d", b"%d x", b"1%d", b"%d\r\nContent-Length: %d"],
                weight=40,
            )
        )
        value = form % ((max(declared, 0),) * form.count(b"%d"))
        head += draw(st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-LENGTH"]))
        head += b": " + value + eol
        if draw(st.integers(0, 19)) == 0:
            head += b"Content-Length: " + draw(st.sampled_from([value, b"%d" % (declared + 1)]))
            head += eol
    if framing in ("chunked", "both"):
        coding = draw(
            mostly(
                [b"chunked"],
                [
                    *(b"Chunked", b"gzip, chunked", b"chunked, gzip", b"xchunked", b"gzip"),
                    *(b"chunked\r\nTransfer-Encoding: chunked", b"chunked,"),
                ],
                weight=40,
            )
        )
        head += b"Transfer-Encoding: " + coding + eol
        body = draw(chunked_body(payload))
    if draw(st.integers(0, 9)) == 0:
        head += draw(st.sampled_from([b"Connection: close", b"connection: keep-alive, Close"]))
        head += eol
    return bytes(head + draw(EOL) + body)


@st.composite
def interim_response(draw: st.DrawFn, tags: set[str]) -> bytes:
    head = draw(status_line(tags, final=False)) + draw(header_lines(tags))
    if draw(st.integers(0, 9)) == 0:
        head += b"Content-Length: 5" + draw(EOL) + draw(EOL) + b"hello"
        tags.add("1xx_body")
        return bytes(head)
    return bytes(head + draw(EOL))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    tags: set[str] = set()
    method = draw(mostly(["GET"], ["HEAD", "UPGRADE"], weight=4))
    data = b"".join(draw(interim_response(tags)) for _ in range(draw(mostly([0], [1, 2], 4))))
    if method == "UPGRADE" and draw(st.booleans()):
        data += b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    else:
        data += draw(final_response(tags))
    data += draw(
        mostly([b""], [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"junk", b"\r\n"], 3)
    )
    step = draw(mostly([0], [1, 2, 3, 5, 8, 13], weight=4))
    if step:  # trickled: every read a few bytes, so every parser state meets a read boundary
        pieces = [data[i : i + step] for i in range(0, len(data), step)]
    else:
        cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=8))))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return Case(method, [p for p in pieces if p], draw(st.booleans()), tags)


def check(case: Case) -> None:
    """httpool agrees with h11 on `case`, or differs only where a listed difference allows."""
    ours, ref = by_httpool(case), by_h11(case)
    note = f"httpool: {ours}\nh11: {ref}\ncase: {case}"
    if ours.kind == "ok":
        assert ref.kind == "ok", "httpool returned a response h11 refuses\n" + note
        assert (ours.status, ours.reason, ours.version) == (ref.status, ref.reason, ref.version), (
            note
        )
        assert ours.headers == ref.headers, note
        assert ours.body == ref.body, note
        assert ours.after == ref.after, note
        if ours.reusable:
            assert ref.reusable, "httpool kept a connection h11 would not\n" + note
    elif ref.kind == "ok":
        assert case.tags & DIFFERENCES.keys(), "httpool refused what h11 accepts\n" + note


def plain(*pieces: bytes, method: str = "GET") -> Case:
    """A hand-written case: these pieces, then the server waits."""
    return Case(method, list(pieces), eof=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
@example(plain(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
@example(plain(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1"))
@example(plain(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n"))
@example(plain(b"HTTP/1.1 200 OK\r\n\r\n", method="HEAD"))
@example(plain(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", method="HEAD"))
@example(plain(b"HTTP/1.1 204 No Content\r\n\r\n"))
@example(plain(b"HTTP/1.1 200 OK\nX: a\n b\nContent-Length: 0\n\n"))
@example(plain(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"))
@example(plain(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"))
@example(plain(b"RTSP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"))
@example(plain(b"HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n"))
@example(plain(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"0\r\n\r\n\r\n"))
@example(
    plain(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T", b"a: 1\r\n\r\n"
    )
)
@example(
    plain(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", b"c\r", b"\n0\r\n\r\n")
)
@example(plain(b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n\x81\x00", method="UPGRADE"))
def test_httpool_reads_responses_as_h11_does(case: Case) -> None:
    """On any response stream, httpool and h11 agree, but for the listed differences."""
    check(case)


def test_the_reference_sees_the_listed_differences() -> None:
    """Each listed difference is real: h11 accepts the bytes and httpool refuses them."""
    samples = {
        "ctl": b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n",
        "status_range": b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n",
        "version": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        "1xx_body": b"HTTP/1.1 103 Hints\r\nContent-Length: 5\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    }
    assert samples.keys() == DIFFERENCES.keys()
    for tag, data in samples.items():
        case = Case("GET", [data], eof=False, tags={tag})
        assert by_h11(case).kind == "ok", tag
        assert by_httpool(case).kind == "error", tag


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok", "starved"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", "error"),
    ],
)
def test_the_harness_tells_the_outcomes_apart(data: bytes, kind: str) -> None:
    """The two readers report ok, starved and error the same way on plain cases."""
    case = Case("GET", [data], eof=False)
    assert by_httpool(case).kind == by_h11(case).kind == kind
