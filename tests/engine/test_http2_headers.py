"""The request header block httpool sends over HTTP/2, read back by h2 on the server side.

httpool switches h2's outbound header checks and normalisation off and guarantees their
rules itself (`_http2._request_head`); these tests hold it to RFC 9113 §8.2-8.3 as h2's
server-side validation of what it receives enforces it.
"""

from __future__ import annotations

import httpx
import pytest
from hpack import NeverIndexedHeaderTuple

from httpool._engine._transport import PoolTransport

from .conftest import assert_clean
from .rawh2 import ScriptedH2Server

pytestmark = pytest.mark.anyio

SECRET = b"sk-do-not-show-0123456789"


def h2_client(server: ScriptedH2Server) -> tuple[PoolTransport, httpx.AsyncClient]:
    """A transport speaking HTTP/2 with prior knowledge, and a client on it."""
    transport = PoolTransport(http1=False, http2=True)
    return transport, httpx.AsyncClient(transport=transport, base_url=server.url, timeout=5)


async def test_header_block_is_normalised_as_rfc_9113_asks(server: ScriptedH2Server) -> None:
    """Pseudo-header fields come first, in order; names arrive lowercase; connection-specific
    fields and a TE other than "trailers" are dropped; values lose surrounding whitespace;
    Authorization and a short cookie are never indexed, other fields may be."""
    transport, client = h2_client(server)
    headers = [
        (b"X-Mixed-Case", b" \tpadded value\t "),
        (b"Connection", b"keep-alive"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"Upgrade", b"h2c"),
        (b"TE", b"gzip"),
        (b"Authorization", b"Bearer " + SECRET),
        (b"Cookie", b"a=1"),
        (b"X-Long", b"x" * 40),
    ]
    async with transport, client:
        response = await client.get("/?q=1", headers=headers)
        assert response.status_code == 200
        assert_clean(transport)
    [head] = server.heads
    names = [name for name, _ in head]
    assert names[:4] == [b":method", b":authority", b":scheme", b":path"]
    assert dict(head[:4]) == {
        b":method": b"GET",
        b":authority": server.url.removeprefix("http://").encode(),
        b":scheme": b"http",
        b":path": b"/?q=1",
    }
    assert all(name == name.lower() for name in names)
    for dropped in (b"connection", b"keep-alive", b"proxy-connection", b"upgrade", b"te", b"host"):
        assert dropped not in names
    fields = {name: (value, type(field)) for field in head for name, value in [field]}
    assert fields[b"x-mixed-case"][0] == b"padded value"
    assert fields[b"authorization"] == (b"Bearer " + SECRET, NeverIndexedHeaderTuple)
    assert fields[b"cookie"] == (b"a=1", NeverIndexedHeaderTuple)
    assert fields[b"x-long"][1] is not NeverIndexedHeaderTuple


async def test_te_trailers_is_kept(server: ScriptedH2Server) -> None:
    """TE: trailers is the one TE value HTTP/2 allows; it is sent (lowercased name)."""
    transport, client = h2_client(server)
    async with transport, client:
        assert (await client.get("/", headers={"TE": "trailers"})).status_code == 200
    assert (b"te", b"trailers") in server.heads[0]


@pytest.mark.parametrize("bad", [b"\r\nx-injected: 1", b"a\nb", b"a\rb", b"a\x00b", b"a\x7fb"])
async def test_control_character_in_a_value_fails_before_a_stream_opens(
    server: ScriptedH2Server, bad: bytes
) -> None:
    """A value with CR, LF, NUL or another control character is refused with
    LocalProtocolError naming the field but not its value; nothing reaches the server and
    the connection goes on serving."""
    transport, client = h2_client(server)
    async with transport, client:
        assert (await client.get("/")).status_code == 200
        with pytest.raises(httpx.LocalProtocolError) as caught:
            await client.get("/", headers=[(b"Authorization", b"Bearer " + SECRET + bad)])
        message = str(caught.value)
        assert "authorization" in message
        assert SECRET.decode() not in message
        assert (await client.get("/")).status_code == 200
        stats = transport.stats()
        assert stats["connections_opened"] == 1
        assert stats["streams_open"] == 0
        assert_clean(transport)
    assert len(server.heads) == 2
    assert server.resets == []


@pytest.mark.parametrize("name", [b"bad name", b":path", b"x(y)", b"caf\xc3\xa9", b"x\r\ny"])
async def test_a_name_that_is_not_a_token_fails_before_a_stream_opens(
    server: ScriptedH2Server, name: bytes
) -> None:
    """A field name with a space, a colon, a separator, a non-ASCII byte or CR LF is
    refused with LocalProtocolError; nothing reaches the server."""
    transport, client = h2_client(server)
    async with transport, client:
        request = httpx.Request("GET", server.url + "/", headers=[(name, b"v")])
        with pytest.raises(httpx.LocalProtocolError, match="header name"):
            await client.send(request)
        assert (await client.get("/")).status_code == 200
        assert transport.stats()["streams_open"] == 0
    assert len(server.heads) == 1


@pytest.mark.parametrize(
    ("method", "match"), [("GE T", "a method is a token"), ("CONNECT", "CONNECT")]
)
async def test_a_bad_method_fails_before_a_stream_opens(
    server: ScriptedH2Server, method: str, match: str
) -> None:
    """A method that is not a token, or CONNECT (whose HTTP/2 form has no :scheme or
    :path), is refused with LocalProtocolError; nothing reaches the server."""
    transport, client = h2_client(server)
    async with transport, client:
        with pytest.raises(httpx.LocalProtocolError, match=match):
            await client.request(method, "/")
        assert transport.stats()["streams_open"] == 0
    assert server.heads == []


async def test_an_empty_host_header_fails_before_a_stream_opens(server: ScriptedH2Server) -> None:
    """An empty Host header would make an empty :authority: refused, nothing sent."""
    transport, client = h2_client(server)
    async with transport, client:
        with pytest.raises(httpx.LocalProtocolError, match="Host"):
            await client.get("/", headers={"Host": ""})
    assert server.heads == []
