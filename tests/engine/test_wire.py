"""httpool's own HTTP/1.1 connection and asyncio backend, byte by byte."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from .conftest import SlowConnectBackend, assert_clean
from .servers import RawHTTPServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(raw_server: RawHTTPServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client on a fresh PoolTransport, based at the raw server."""
    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=raw_server.url) as client,
    ):
        yield client


def stats(client: httpx.AsyncClient) -> dict[str, object]:
    """The stats of the client's PoolTransport."""
    transport = client._transport
    assert isinstance(transport, PoolTransport)
    return transport.stats()


async def test_server_connection_close_header(
    client: httpx.AsyncClient, raw_server: RawHTTPServer
) -> None:
    """A response with `Connection: close` is read whole and its connection is not reused."""
    for _ in range(3):
        assert (await client.get("/close")).text == "ok"
    assert raw_server.accepted == 3
    assert stats(client)["errors"] == {}


async def test_request_connection_close_header(
    client: httpx.AsyncClient, raw_server: RawHTTPServer
) -> None:
    """A request sent with `Connection: close` does not leave its connection in the pool."""
    await client.get("/", headers={"connection": "close"})
    assert stats(client)["connections_open"] == 0
    await client.get("/")
    assert raw_server.accepted == 2


async def test_body_until_eof_and_http10(client: httpx.AsyncClient) -> None:
    """A body without length ends at EOF; an HTTP/1.0 response is read and not reused."""
    response = await client.get("/eof")
    assert response.content == b"e" * 5000
    response = await client.get("/http10")
    assert (response.http_version, response.text) == ("HTTP/1.0", "ok")
    assert stats(client)["connections_open"] == 0


async def test_interim_100_continue_is_skipped(
    client: httpx.AsyncClient, raw_server: RawHTTPServer
) -> None:
    """A 100 Continue before the final response is skipped and the connection reused."""
    for _ in range(3):
        response = await client.get("/continue")
        assert (response.status_code, response.text) == (200, "ok")
    assert raw_server.accepted == 1


async def test_status_reason_and_repeated_headers(client: httpx.AsyncClient) -> None:
    """Status, reason phrase and repeated headers (any case) come through as sent."""
    response = await client.get("/headers")
    assert (response.status_code, response.reason_phrase) == (201, "Created")
    assert response.headers.get_list("x-twice") == ["1", "2"]
    assert response.http_version == "HTTP/1.1"


async def test_malformed_and_truncated_responses_raise(client: httpx.AsyncClient) -> None:
    """A garbled status line and a body cut short raise RemoteProtocolError and leak nothing."""
    with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
        await client.get("/bad")
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        await client.get("/short")
    transport = client._transport
    assert isinstance(transport, PoolTransport)
    assert_clean(transport)
    assert (await client.get("/")).text == "ok"


async def test_bad_requests_are_refused(
    client: httpx.AsyncClient, raw_server: RawHTTPServer
) -> None:
    """Line breaks in header values, bad header names and a wrong Content-Length are refused."""
    with pytest.raises(httpx.LocalProtocolError):
        await client.get("/", headers={"x-evil": "a\r\nx-injected: 1"})
    with pytest.raises(httpx.LocalProtocolError):
        await client.get("/", headers={"bad name": "1"})
    with pytest.raises(httpx.LocalProtocolError, match="Content-Length"):
        await client.post("/echo", content=b"abc", headers={"content-length": "10"})
    assert raw_server.requests == 0
    assert (await client.get("/")).text == "ok"


async def test_chunked_and_large_uploads(
    client: httpx.AsyncClient, raw_server: RawHTTPServer
) -> None:
    """Chunked uploads from async iterators and a 5 MB bytes upload arrive whole, on one connection."""

    async def parts() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([65 + i % 26]) * 2000
            await asyncio.sleep(0)

    assert (await client.post("/echo", content=parts())).text == "100000"
    assert (await client.post("/echo", content=b"u" * 5_000_000)).text == "5000000"
    assert (await client.post("/echo", content=b"")).text == "0"
    assert raw_server.accepted == 1


async def test_read_timeout_closes_the_connection(client: httpx.AsyncClient) -> None:
    """A read timeout raises httpx.ReadTimeout and the half-read connection is dropped."""
    with pytest.raises(httpx.ReadTimeout):
        await client.get("/slow?d=0.5", timeout=httpx.Timeout(5.0, read=0.05))
    assert stats(client)["connections_open"] == 0
    assert (await client.get("/")).text == "ok"


async def test_backpressure_on_a_large_streamed_download(client: httpx.AsyncClient) -> None:
    """A slowly read 8 MB body arrives whole (reading pauses and resumes under the hood)."""
    total = 0
    async with client.stream("GET", "/bytes?n=8000000") as response:
        async for part in response.aiter_raw():
            total += len(part)
            if total < 1_000_000:
                await asyncio.sleep(0.001)
    assert total == 8_000_000


async def test_unix_domain_socket(tmp_path: Path) -> None:
    """`uds=` sends requests over a Unix domain socket."""
    server = RawHTTPServer()
    path = str(tmp_path / "s.sock")
    await server.start(uds=path)
    try:
        async with (
            PoolTransport(uds=path) as transport,
            httpx.AsyncClient(transport=transport) as client,
        ):
            for _ in range(3):
                assert (await client.get("http://localhost/")).text == "ok"
        assert server.accepted == 1
    finally:
        await server.aclose()


async def test_local_address_and_socket_options(raw_server: RawHTTPServer) -> None:
    """`local_address` and `socket_options` apply to new connections."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    async with (
        PoolTransport(local_address="127.0.0.1", socket_options=options) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        response = await client.get(raw_server.url)
        stream = response.extensions["network_stream"]
        assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
        sock = stream.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


async def test_connect_retries() -> None:
    """`retries=2` tries a refused connect three times before raising ConnectError."""
    backend = SlowConnectBackend(delay=0)
    async with (
        PoolTransport(retries=2, network_backend=backend) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:1/")
    assert backend.connects == 3
