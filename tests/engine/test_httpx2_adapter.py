"""The engine as an httpx2 transport: bodies both ways, errors as httpx2's, stats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest

import httpool

from ..upstream import Upstream

pytestmark = pytest.mark.anyio


async def test_a_streamed_upload_and_a_streamed_answer(upstream: Upstream) -> None:
    """A body from an async iterator reaches the server; the answer streams back."""

    async def body() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two"):
            yield part

    transport = httpool.Httpx2PoolTransport(limits=httpx2.Limits(max_connections=2))
    async with httpx2.AsyncClient(transport=transport, base_url=upstream.url) as client:
        response = await client.post("/echo", content=body())
        assert response.json()["body"] == "one,two"
        async with client.stream("GET", "/stream?n=3") as streamed:
            chunks = [c async for c in streamed.aiter_bytes()]
        assert b"".join(chunks).count(b"data:") == 3
        stats = transport.stats()
    assert stats["requests_served"] == 2
    assert stats["connections_opened"] == 1
    assert transport.proxy_labels == []


async def test_an_error_while_reading_the_body_is_httpx2s() -> None:
    """A server that dies mid-body raises httpx2's RemoteProtocolError, not httpx's."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        transport = httpool.Httpx2PoolTransport()
        async with httpx2.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx2.RemoteProtocolError):
                await client.get(f"http://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()


async def test_the_adapter_over_a_transport_without_stats() -> None:
    """Over an httpx transport that keeps no stats, the adapter reports none."""
    import httpx

    inner = httpx.MockTransport(lambda request: httpx.Response(204))
    transport = httpool.Httpx2PoolTransport(engine=inner)
    async with httpx2.AsyncClient(transport=transport) as client:
        assert (await client.get("http://mock.test/")).status_code == 204
    assert transport.stats() == {}
    assert transport.proxy_labels == []
