"""The engine as an httpx2 transport: bodies both ways, errors as httpx2's, stats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpcore2
import httpx
import httpx2
import pytest

import httpool

from ..servers import free_port
from ..upstream import Upstream
from .servers import RawHTTPServer

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


async def traced2(transport: httpx2.AsyncBaseTransport, url: str) -> list[tuple[str, Any]]:
    """The http11.* trace events of one httpx2 request on `transport`."""
    events: list[tuple[str, Any]] = []

    async def trace(name: str, info: dict[str, Any]) -> None:
        events.append((name, info))

    async with transport, httpx2.AsyncClient(transport=transport) as client:
        await client.post(url, content=b"abc", extensions={"trace": trace})
    return [(name, info) for name, info in events if name.startswith("http11.")]


async def test_trace_events_match_httpx2s_own_transport(raw_server: RawHTTPServer) -> None:
    """The trace extension of an httpx2 client gets the events of httpx2's own transport,
    with httpcore2's request in their info (the adapter makes no httpx request)."""
    ours = await traced2(httpool.Httpx2PoolTransport(), raw_server.url + "/echo")
    stock = await traced2(httpx2.AsyncHTTPTransport(), raw_server.url + "/echo")
    assert [(name, sorted(info)) for name, info in ours] == [
        (name, sorted(info)) for name, info in stock
    ]
    started = [info["request"] for name, info in ours if "request" in info]
    assert started
    assert all(isinstance(request, httpcore2.Request) for request in started)
    assert started[0].url == httpcore2.URL(raw_server.url + "/echo")


async def test_engine_errors_are_httpx2s_and_counted_once() -> None:
    """A refused connection raises httpx2's ConnectError; the engine counts it once."""
    transport = httpool.Httpx2PoolTransport()
    async with httpx2.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx2.ConnectError) as info:
            await client.get(f"http://127.0.0.1:{free_port()}/")
        with pytest.raises(httpx2.UnsupportedProtocol, match="unsupported protocol 'ftp://'"):
            await client.get("ftp://127.0.0.1/")
    assert info.value.request.url.scheme == "http"
    assert transport.stats()["errors"] == {"ConnectError": 1}


class _Failing(httpx.AsyncByteStream):
    """An httpx response body that fails while read (`ReadError`) or when closed."""

    def __init__(self, on_close: bool) -> None:
        self.on_close = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"part"
        if not self.on_close:
            raise httpx.ReadError("cut by the test")

    async def aclose(self) -> None:
        if self.on_close:
            raise httpx.CloseError("close failed in the test")


async def test_over_another_httpx_transport_bodies_and_errors_are_httpx2s() -> None:
    """Over an httpx transport that is not httpool's (as a policy wrapper is), a streamed
    upload reaches it, and its errors, before or while the body is read or closed, are
    httpx2's."""
    uploads: list[bytes] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        uploads.append(await request.aread())
        if request.url.path == "/refused":
            raise httpx.ConnectError("refused by the test", request=request)
        stream = _Failing(on_close=request.url.path == "/close")
        return httpx.Response(200, stream=stream)

    async def parts() -> AsyncIterator[bytes]:
        yield b"up,"
        yield b"load"

    transport = httpool.Httpx2PoolTransport(engine=httpx.MockTransport(handle))
    async with httpx2.AsyncClient(transport=transport, base_url="http://mock.test") as client:
        with pytest.raises(httpx2.ReadError, match="cut by the test"):
            await client.post("/read", content=parts())
        with pytest.raises(httpx2.ConnectError, match="refused by the test"):
            await client.get("/refused")
        response = await client.send(client.build_request("GET", "/close"), stream=True)
        with pytest.raises(httpx2.CloseError, match="close failed"):
            await response.aclose()
    assert uploads[0] == b"up,load"
