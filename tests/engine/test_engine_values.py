"""The engine on plain values, with no client library: a request in, a response out."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from httpool._engine._errors import RemoteProtocolError, UnsupportedProtocol
from httpool._engine._messages import Request, Response
from httpool._engine._transport import PoolTransport

from ..upstream import Upstream

pytestmark = pytest.mark.anyio


def request_to(
    url: str, method: bytes = b"GET", body: bytes | AsyncIterator[bytes] = b""
) -> Request:
    """A request to `http://127.0.0.1:<port>/<path>` as plain values."""
    rest = url.removeprefix("http://")
    authority, _, path = rest.partition("/")
    host, _, port = authority.partition(":")
    headers = [(b"Host", authority.encode())]
    return Request(method, b"http", host.encode(), int(port), b"/" + path.encode(), headers, body)


async def test_a_plain_request_gets_a_plain_response(upstream: Upstream) -> None:
    """The engine takes bytes and gives back status, raw headers and a body stream; a
    body in memory and a streamed one both arrive; the connection goes back when the
    body is closed."""

    async def parts() -> AsyncIterator[bytes]:
        yield b"one,"
        yield b"two"

    transport = PoolTransport()
    engine = transport.engine
    async with transport:
        sent = request_to(upstream.url + "/echo?x=1", b"POST", body=b"in memory")
        sent.headers.append((b"Content-Length", b"9"))
        assert repr(sent) == f"<Request POST http://{upstream.url.removeprefix('http://')}>"
        response = await engine.send(sent)
        assert isinstance(response, Response)
        assert response.status == 200
        assert (b"content-type", b"application/json") in response.headers
        assert response.extensions["http_version"] == b"HTTP/1.1"
        answer = json.loads(b"".join([chunk async for chunk in response.body]))
        await response.body.aclose()
        assert answer["body"] == "in memory"
        assert engine.stats()["connections_idle"] == 1

        streamed = request_to(upstream.url + "/echo", b"POST", body=parts())
        streamed.headers.append((b"Transfer-Encoding", b"chunked"))
        response = await engine.send(streamed)
        answer = json.loads(b"".join([chunk async for chunk in response.body]))
        await response.body.aclose()
        assert answer["body"] == "one,two"
        stats = engine.stats()
    assert stats["requests_served"] == 2
    assert stats["connections_opened"] == 1


async def test_the_engine_raises_its_own_exceptions() -> None:
    """With no adapter, errors are the engine's own, counted by name: a body cut short is
    a RemoteProtocolError; an unsupported scheme is refused before anything is sent."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = PoolTransport()
    try:
        async with transport:
            response = await transport.engine.send(request_to(f"http://127.0.0.1:{port}/"))
            with pytest.raises(RemoteProtocolError, match="expected 100"):
                async for _ in response.body:
                    pass
            await response.body.aclose()
            ftp = request_to(f"http://127.0.0.1:{port}/")
            ftp.scheme = b"ftp"
            with pytest.raises(UnsupportedProtocol, match="'ftp://'"):
                await transport.engine.send(ftp)
            assert transport.stats()["errors"] == {"RemoteProtocolError": 1}
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"plain", "ascii"),
        ("caf\u00e9".encode(), "utf-8"),  # a UTF-8 value
        (b"caf\xe9", "iso-8859-1"),  # a Latin-1 byte that is no UTF-8
    ],
)
async def test_response_header_encoding_is_the_one_the_library_finds(
    value: bytes, expected: str
) -> None:
    """The adapters give an all-ASCII head's `Headers.encoding` at once (ENCODING in
    `_core`); any other head is left to the library, which finds the same as for a
    response it makes itself. httpx and httpx2 alike, and the values read the same."""
    import httpx
    import httpx2

    import httpool

    head = b"HTTP/1.1 200 OK\r\nX-Name: " + value + b"\r\nContent-Length: 2\r\n\r\nok"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(head)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        async with httpx.AsyncClient(transport=PoolTransport()) as client:
            response = await client.get(url)
        async with httpx2.AsyncClient(transport=httpool.Httpx2PoolTransport()) as client2:
            response2 = await client2.get(url)
    finally:
        server.close()
    reference = httpx.Response(200, headers=[(b"X-Name", value)])
    assert reference.headers.encoding == expected  # what httpx finds by itself
    for got in (response, response2):
        assert got.headers.encoding == expected
        assert got.headers["x-name"] == reference.headers["x-name"]
        assert got.text == "ok"
