"""A connection is handed out only when clean: nothing left over, not closed by the server.

Each test holds the pool at one connection, keeps a streamed response open (a slow
consumer, as an SSE relay is) while another request waits for the connection, lets the
server misbehave on the held connection, and then closes the response: the waiting
request must get a fresh connection and its own answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from .conftest import assert_clean, start_h2
from .servers import RawH2Server, RawHTTPServer

pytestmark = pytest.mark.anyio

SMUGGLED = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nsmuggled!"


class TrailingBytesServer(RawHTTPServer):
    """`/trailing?extra=`: a complete response, then (a moment later) more bytes."""

    def __init__(self, extra: bytes) -> None:
        super().__init__()
        self.extra = extra

    async def _respond(
        self, method: str, target: str, body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        if not target.startswith("/trailing"):
            await super()._respond(method, target, body, writer)
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
        await writer.drain()
        await asyncio.sleep(0.02)  # the client has parsed the whole response by now
        writer.write(self.extra)
        await writer.drain()


async def _until_readable(response: httpx.Response) -> None:
    """Wait (bounded) until the response's connection has unread bytes or an EOF."""
    stream: Any = response.extensions["network_stream"]
    for _ in range(500):
        if stream.get_extra_info("is_readable"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server's extra bytes never arrived")


async def _read_slowly(response: httpx.Response, body: bytes) -> None:
    """Read `response` as a slow consumer: the server's next move arrives before its end.

    (The whole body is in after the first chunk; the iteration ends, and the response
    gives its connection back, only after the server's extra bytes or close.)
    """
    chunks = response.aiter_raw()
    assert await chunks.__anext__() == body
    await _until_readable(response)
    assert [chunk async for chunk in chunks] == []


async def _waiting(transport: PoolTransport) -> None:
    for _ in range(500):
        if transport.stats()["waiters"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second request never waited")


@pytest.mark.parametrize("extra", [SMUGGLED, b"garbage\r\n\r\n"], ids=["a whole response", "junk"])
async def test_bytes_after_a_response_never_reach_the_waiting_request(extra: bytes) -> None:
    """Bytes a server sends after a complete response are never read as the next response."""
    server = TrailingBytesServer(extra)
    await server.start()
    limits = httpx.Limits(max_connections=1)
    try:
        async with (
            PoolTransport(limits=limits) as transport,
            httpx.AsyncClient(transport=transport, base_url=server.url) as client,
        ):
            async with client.stream("GET", "/trailing") as first:
                waiting = asyncio.create_task(client.get("/bytes?n=3"))
                await _waiting(transport)
                await _read_slowly(first, b"first")
            second = await waiting
            assert (second.status_code, second.text) == (200, "xxx")
            assert transport.stats()["errors"] == {}
            assert_clean(transport)
            assert server.accepted == 2  # the dirty connection was not reused
    finally:
        await server.aclose()


async def test_connection_closed_by_the_server_is_not_handed_to_a_waiting_post(
    raw_server: RawHTTPServer,
) -> None:
    """A waiting POST gets a fresh connection when the server closed the one it waited for."""
    raw_server.close_after = 1  # close after each response, without saying so
    limits = httpx.Limits(max_connections=1)
    async with (
        PoolTransport(limits=limits) as transport,
        httpx.AsyncClient(transport=transport, base_url=raw_server.url) as client,
    ):
        async with client.stream("GET", "/bytes?n=4") as first:
            waiting = asyncio.create_task(client.post("/echo", content=b"hello"))
            await _waiting(transport)
            await _read_slowly(first, b"xxxx")  # the server's FIN comes in meanwhile
        second = await waiting
        assert (second.status_code, second.text) == (200, "5")
        assert transport.stats()["errors"] == {}
        assert transport.stats()["retries"] == 0  # a fresh connection, not a retry
        assert_clean(transport)
    assert raw_server.accepted == 2


async def test_idle_connection_with_leftover_bytes_is_not_reused() -> None:
    """An idle connection on which bytes arrived after its response is closed, not reused."""
    server = TrailingBytesServer(SMUGGLED)
    await server.start()
    try:
        async with (
            PoolTransport() as transport,
            httpx.AsyncClient(transport=transport, base_url=server.url) as client,
        ):
            async with client.stream("GET", "/trailing") as first:
                await _read_slowly(first, b"first")
            for _ in range(3):
                response = await client.get("/bytes?n=2")
                assert response.text == "xx"
            assert transport.stats()["errors"] == {}
            assert server.accepted == 2
    finally:
        await server.aclose()


async def test_http2_connection_closed_by_the_server_is_not_shared(
    h2_servers: list[RawH2Server],
) -> None:
    """An HTTP/2 connection the server closed is never handed to a waiting request."""
    server = await start_h2(h2_servers, max_streams=1, delay=0.05)
    limits = httpx.Limits(max_connections=1)
    async with (
        PoolTransport(http1=False, http2=True, limits=limits) as transport,
        httpx.AsyncClient(transport=transport, base_url=server.url) as client,
    ):
        assert (await client.get("/")).status_code == 200  # learns the limit of 1 stream
        async with client.stream("GET", "/") as first:
            waiting = asyncio.create_task(client.get("/"))
            await _waiting(transport)
            await first.aread()
            server.drop_connections()
            stream: Any = first.extensions["network_stream"]
            for _ in range(500):
                if stream.get_extra_info("peer_closed"):
                    break
                await asyncio.sleep(0.01)
        second = await waiting
        assert second.status_code == 200
        assert transport.stats()["errors"] == {}
        assert_clean(transport)
    assert server.accepted == 2
