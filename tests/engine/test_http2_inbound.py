"""Received HTTP/2 header blocks: httpool's checks (`_h2_inbound.problem`) against h2's own.

h2 with `validate_inbound_headers` on is the reference nobody here wrote: for every
header block hypothesis makes, from fields chosen to hit each rule of RFC 9113 §8.2-8.3,
a client with h2's checks and a client with httpool's must reach the same verdict on the
same bytes. The one allowed difference: httpool also refuses a `:status` that is not a
three-digit code from 100 to 599, which h2 passes on.

Then, against a scripted raw server: a malformed answer fails its own request, as a
stream error (RST_STREAM with PROTOCOL_ERROR, RFC 9113 §8.1.1), and the connection's
other requests go on.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import httpx
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from httpool._engine._h2_inbound import problem
from httpool._engine._transport import PoolTransport

from .rawh2 import MALFORMED, ScriptedH2Server

NAMES = [
    b":status", b":path", b":method", b":authority", b":scheme", b":protocol", b":foo",
    b":", b"::status", b"content-type", b"x-a", b"Content-Type", b"x a", b"x:a", b"",
    b"te", b"TE", b"connection", b"keep-alive", b"transfer-encoding", b"upgrade",
    b"proxy-connection", b"x\x7f", b"x\xff", b"x\x00", b"x\t", b"!#$%&'*+-.^_`|~",
    b"x@[]", b"cookie", b"set-cookie",
]  # fmt: skip
VALUES = [
    b"", b"ok", b"200", b"204", b"101", b"103", b"099", b"600", b"20", b"2000", b"abc",
    b" ok", b"ok ", b"\tok", b"ok\t", b"o\tk", b"o k", b"a\x00b", b"a\rb", b"a\nb",
    b"trailers", b"TRAILERS", b"trailers, gzip", b"gzip", b"\x01", b"\x7f", b"\xff",
    b"\x80abc", b"a=1; b=2",
]  # fmt: skip
REQUEST = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]


def _server() -> h2.connection.H2Connection:
    """A server that sends what it is given, unchecked."""
    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    return h2.connection.H2Connection(config=config)


def _client(*, h2_checks: bool) -> h2.connection.H2Connection:
    # Normalisation off on both: it only joins `cookie` fields (a request's, RFC 9113
    # §8.2.3), and joining two of them can make or unmake a space at a value's end, which
    # would compare h2's joining with nothing rather than its checks with httpool's.
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_inbound_headers=h2_checks,
        normalize_inbound_headers=False,
    )
    return h2.connection.H2Connection(config=config)


def _answer(fields: list[tuple[bytes, bytes]], *, trailers: bool) -> tuple[bytes, bytes]:
    """The bytes a server sends for `fields` (as the response's header block, or as its
    trailers after a good one), and the bytes of the client's request it answers."""
    client, server = _client(h2_checks=True), _server()
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    request = client.data_to_send()
    server.initiate_connection()
    server.receive_data(request)
    if trailers:
        server.send_headers(1, [(b":status", b"200")])
        server.send_data(1, b"body")
    if not fields:
        reject()  # h2 cannot send an empty header block
    try:
        server.send_headers(1, fields, end_stream=True)
    except h2.exceptions.ProtocolError:  # an informational answer: more must follow
        try:
            server.send_headers(1, fields)
        except h2.exceptions.ProtocolError:
            reject()  # h2 cannot send it (an informational block after the response)
    return request, server.data_to_send()


def _h2_verdict(request: bytes, answer: bytes) -> bool:
    """Whether h2, checking what it receives, takes the answer."""
    client = _client(h2_checks=True)
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    assert client.data_to_send() == request  # the same request, so the same answer
    try:
        client.receive_data(answer)
    except h2.exceptions.ProtocolError:
        return False
    return True


def _httpool_verdict(request: bytes, answer: bytes) -> str | None:
    """What httpool finds wrong with the answer (its checks, h2's off), or None."""
    client = _client(h2_checks=False)
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    assert client.data_to_send() == request
    try:
        events = client.receive_data(answer)
    except h2.exceptions.ProtocolError as exc:  # the state machine's, not the checks'
        return f"h2's state machine: {exc}"
    for event in events:
        if isinstance(event, h2.events.ResponseReceived | h2.events.InformationalResponseReceived):
            why = problem(event.headers)
        elif isinstance(event, h2.events.TrailersReceived):
            why = problem(event.headers, trailers=True)
        else:
            continue
        if why is not None:
            return why
    return None


fields_st = st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=5)
status_st = st.sampled_from([b"200", b"204", b"404", b"103", b"099", b"abc", b""])


@settings(max_examples=1500, deadline=None)
@given(
    status=st.none() | status_st,
    fields=fields_st,
    trailers=st.booleans(),
)
def test_httpool_and_h2_agree_on_every_header_block(
    status: bytes | None, fields: list[tuple[bytes, bytes]], trailers: bool
) -> None:
    """Most blocks start with a `:status` (so the later rules are reached); the rest and
    every field are drawn from values that break one rule each."""
    block = ([(b":status", status)] if status is not None else []) + fields
    request, answer = _answer(block, trailers=trailers)
    h2_takes = _h2_verdict(request, answer)
    why = _httpool_verdict(request, answer)
    if h2_takes and why is not None:
        assert why == "a ':status' that is not a three-digit status code", (block, why)
    else:
        assert h2_takes == (why is None), (block, trailers, why)


@pytest.mark.parametrize(
    ("block", "why"),
    [
        ([(b":status", b"200"), (b"content-type", b"a")], None),
        ([(b":status", b"200"), (b"x-a", b"")], None),
        ([(b":status", b"200"), (b"te", b"Trailers")], None),
        ([(b":status", b"200"), (b"X-A", b"v")], "a field name"),
        ([(b":status", b"200"), (b"x-a", b"v\r\nx-b: w")], "the value of 'x-a'"),
        ([(b":status", b"200"), (b"transfer-encoding", b"chunked")], "connection-specific"),
        ([(b":status", b"200"), (b":status", b"200")], "pseudo-header field ':status'"),
        ([(b":status", b"200"), (b":path", b"/")], "pseudo-header field ':path'"),
        ([(b"x-a", b"v")], "no ':status'"),
        ([(b":status", b"20")], "a ':status' that is not"),
    ],
)
def test_each_rule_names_the_field_and_never_the_value(
    block: list[tuple[bytes, bytes]], why: str | None
) -> None:
    found = problem(block)
    if why is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(why)
        assert b"v\r\nx-b" not in found.encode()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_a_malformed_answer_fails_its_stream_only(
    server: ScriptedH2Server, kind: str
) -> None:
    """The malformed answer is a RemoteProtocolError naming what is wrong; the server
    gets RST_STREAM(PROTOCOL_ERROR) for that stream when it is still open (trailers end
    it); the next request is answered on the same connection."""
    transport = PoolTransport(http1=False, http2=True)
    async with httpx.AsyncClient(transport=transport, base_url=server.url, timeout=5.0) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed HTTP/2 response"):
            await client.get(f"/malformed?kind={kind}")  # reads the body (and trailers)
        assert (await client.get("/")).status_code == 200
        assert server.accepted == 1
    trailers = kind.startswith("trailers-")
    assert server.resets == ([] if trailers else [h2.errors.ErrorCodes.PROTOCOL_ERROR])
