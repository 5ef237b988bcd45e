"""PoolTransport over HTTP/1.1 against real servers: reuse, limits, timeouts, bodies, upgrades."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, aconnect_ws

from httpool._engine._http11 import HTTP11Connection
from httpool._engine._transport import PoolTransport

from ..servers import serve_app
from ..upstream import Upstream
from .conftest import assert_clean
from .messages import engine_request
from .servers import RawHTTPServer
from .test_h11_differential import FakeStream, run

pytestmark = pytest.mark.anyio


async def test_keep_alive_reuses_one_connection(upstream: Upstream) -> None:
    """A hundred sequential requests travel over a single TCP connection."""
    seen, url = upstream, upstream.url
    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=url) as client,
    ):
        for _ in range(100):
            response = await client.get("/")
            assert response.json()["path"] == "/"
        stats = transport.stats()
    assert seen.connections == 1
    assert stats["connections_opened"] == 1
    assert stats["requests_served"] == 100


async def test_max_connections_is_never_exceeded(raw_server: RawHTTPServer) -> None:
    """Fifty concurrent requests with max_connections=5 never hold more than five sockets."""
    limits = httpx.Limits(max_connections=5)
    async with (
        PoolTransport(limits=limits) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        responses = await asyncio.gather(
            *(client.get(f"{raw_server.url}/slow?d=0.01") for _ in range(50))
        )
        assert all(r.status_code == 200 for r in responses)
        assert_clean(transport)
    assert raw_server.max_open <= 5
    assert raw_server.accepted <= 5


async def test_max_connections_counted_at_uvicorn(upstream: Upstream) -> None:
    """uvicorn sees at most max_connections distinct client connections under concurrency 50."""
    seen, url = upstream, upstream.url
    limits = httpx.Limits(max_connections=5)
    async with (
        PoolTransport(limits=limits) as transport,
        httpx.AsyncClient(transport=transport, base_url=url) as client,
    ):
        for _ in range(3):
            await asyncio.gather(*(client.get("/slow?d=0.01") for _ in range(50)))
    assert seen.connections <= 5
    assert len(seen.requests) == 150


async def test_pool_timeout_then_recovery(raw_server: RawHTTPServer) -> None:
    """An exhausted pool raises PoolTimeout within the pool timeout and works again after."""
    limits = httpx.Limits(max_connections=1)
    timeout = httpx.Timeout(5.0, pool=0.2)
    async with (
        PoolTransport(limits=limits) as transport,
        httpx.AsyncClient(transport=transport, timeout=timeout, base_url=raw_server.url) as client,
    ):
        held = await client.send(client.build_request("GET", "/bytes?n=100"), stream=True)
        started = time.monotonic()
        with pytest.raises(httpx.PoolTimeout) as info:
            await client.get("/")
        assert 0.15 <= time.monotonic() - started < 1.5
        assert info.value.request.url.path == "/"
        assert transport.stats()["errors"] == {"PoolTimeout": 1}
        await held.aclose()
        assert (await client.get("/")).text == "ok"
        assert_clean(transport)


async def test_max_keepalive_connections_closes_extra_idle(raw_server: RawHTTPServer) -> None:
    """After a burst only max_keepalive_connections stay idle; the rest are closed."""
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=2)
    async with (
        PoolTransport(limits=limits) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        await asyncio.gather(*(client.get(f"{raw_server.url}/slow?d=0.05") for _ in range(10)))
        stats = transport.stats()
        assert stats["connections_idle"] == 2
        assert stats["connections_open"] == 2
        assert stats["connections_closed"] == 8
        for _ in range(50):
            if raw_server.open == 2:
                break
            await asyncio.sleep(0.01)
        assert raw_server.open == 2


async def test_keepalive_expiry_opens_a_new_connection(raw_server: RawHTTPServer) -> None:
    """A connection idle longer than keepalive_expiry is not reused."""
    limits = httpx.Limits(keepalive_expiry=0.1)
    async with (
        PoolTransport(limits=limits) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        await client.get(raw_server.url)
        await client.get(raw_server.url)
        assert raw_server.accepted == 1
        await asyncio.sleep(0.2)
        await client.get(raw_server.url)
        assert raw_server.accepted == 2
        assert transport.stats()["connections_open"] == 1


async def test_expired_idle_connections_of_other_origins_are_swept(
    raw_server: RawHTTPServer,
) -> None:
    """Idle connections past keepalive_expiry are closed as the pool is used, any origin."""
    other = RawHTTPServer()
    await other.start()
    try:
        limits = httpx.Limits(keepalive_expiry=0.1)
        async with (
            PoolTransport(limits=limits) as transport,
            httpx.AsyncClient(transport=transport) as client,
        ):
            await asyncio.gather(*(client.get(f"{raw_server.url}/slow?d=0.02") for _ in range(3)))
            assert transport.stats()["connections_idle"] == 3
            await asyncio.sleep(0.15)
            await client.get(other.url)
            stats = transport.stats()
            assert stats["connections_open"] == 1
            assert list(stats["origins"]) == [f"http://127.0.0.1:{other.port}"]
    finally:
        await other.aclose()


async def test_max_lifetime_retires_busy_connections(raw_server: RawHTTPServer) -> None:
    """A connection older than max_lifetime is not reused, even when it is always busy."""
    async with (
        PoolTransport(max_lifetime=0.1) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        deadline = time.monotonic() + 0.35
        while time.monotonic() < deadline:
            assert (await client.get(raw_server.url)).status_code == 200
            await asyncio.sleep(0.005)
        assert 3 <= raw_server.accepted <= 5
        assert transport.stats()["connections_open"] == 1


async def test_streamed_response_body_in_chunks(raw_server: RawHTTPServer) -> None:
    """A chunked response streams in pieces and the connection is reused afterwards."""
    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=raw_server.url) as client,
    ):
        async with client.stream("GET", "/chunked?n=20&size=1000") as response:
            assert transport.stats()["connections_in_use"] == 1
            parts = [part async for part in response.aiter_raw()]
        assert sum(map(len, parts)) == 20_000
        assert len(parts) > 1
        assert (await client.get("/")).text == "ok"
        assert raw_server.accepted == 1
        assert_clean(transport)


async def test_large_content_length_body(raw_server: RawHTTPServer) -> None:
    """A 5 MB Content-Length body arrives whole."""
    async with PoolTransport() as transport, httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"{raw_server.url}/bytes?n=5000000")
        assert len(response.content) == 5_000_000


async def test_uploads_bytes_and_async_iterator(upstream: Upstream) -> None:
    """Bytes bodies and async-iterator (chunked) bodies both reach the server whole."""
    url = upstream.url

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"y" * 1000
            await asyncio.sleep(0)

    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=url) as client,
    ):
        assert (await client.post("/length", content=b"x" * 300_000)).text == "300000"
        assert (await client.post("/length", content=parts())).text == "100000"
        assert (await client.put("/length", json={"a": 1})).text == "7"
        assert_clean(transport)


async def test_head_204_and_304_have_no_body(raw_server: RawHTTPServer) -> None:
    """HEAD, 204 and 304 responses end without a body and keep the connection."""
    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=raw_server.url) as client,
    ):
        assert (await client.head("/bytes?n=50")).content == b""
        assert (await client.get("/status?code=204")).status_code == 204
        assert (await client.get("/status?code=304")).status_code == 304
        assert (await client.get("/")).text == "ok"
    assert raw_server.accepted == 1


async def test_response_dropped_unread_releases_the_slot(raw_server: RawHTTPServer) -> None:
    """Closing a response before reading its body frees the slot (the connection is closed)."""
    limits = httpx.Limits(max_connections=1)
    async with (
        PoolTransport(limits=limits) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        for _ in range(3):
            async with client.stream("GET", f"{raw_server.url}/bytes?n=100000"):
                pass
        assert_clean(transport)
        assert (await client.get(raw_server.url)).text == "ok"


async def test_connect_error_is_mapped_and_counted() -> None:
    """A refused connection raises httpx.ConnectError with the request attached."""
    async with (
        PoolTransport(retries=0) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        with pytest.raises(httpx.ConnectError) as info:
            await client.get("http://127.0.0.1:1/")
        assert info.value.request.url.port == 1
        assert transport.stats()["errors"] == {"ConnectError": 1}
        assert_clean(transport)
        assert transport.stats()["connections_open"] == 0


async def test_unsupported_scheme_is_refused() -> None:
    """A URL that is neither http nor https raises httpx.UnsupportedProtocol."""
    async with PoolTransport() as transport:
        with pytest.raises(httpx.UnsupportedProtocol):
            await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))


async def test_many_origins_share_the_connection_limit(raw_server: RawHTTPServer) -> None:
    """With max_connections reached, an idle connection of another origin makes room."""
    other = RawHTTPServer()
    await other.start()
    try:
        limits = httpx.Limits(max_connections=2)
        async with (
            PoolTransport(limits=limits) as transport,
            httpx.AsyncClient(transport=transport) as client,
        ):
            await asyncio.gather(client.get(raw_server.url), client.get(raw_server.url))
            assert transport.stats()["connections_idle"] == 2
            assert (await client.get(other.url)).text == "ok"
            stats = transport.stats()
            assert stats["connections_open"] == 2
            assert set(stats["origins"]) == {
                f"http://127.0.0.1:{raw_server.port}",
                f"http://127.0.0.1:{other.port}",
            }
            await asyncio.gather(*(client.get(u) for u in [raw_server.url, other.url] * 10))
            assert_clean(transport)
        assert raw_server.max_open + other.max_open <= 3
    finally:
        await other.aclose()


# -- upgrades, the trace extension, and the connection's own view ------------------------


async def ws_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app: a WebSocket echo at any path, and "ok" over plain HTTP."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_websocket_upgrade_with_httpx_ws() -> None:
    """httpx-ws talks to uvicorn's WebSocket server through PoolTransport (101 + stream).

    The upgraded connection belongs to the WebSocket and never returns to the pool.
    """
    with serve_app(ws_echo, ws="websockets-sansio", lifespan="off") as url:
        async with (
            PoolTransport() as transport,
            httpx.AsyncClient(transport=transport, base_url=url) as client,
        ):
            ws: AsyncWebSocketSession
            async with aconnect_ws("/ws", client) as ws:
                for i in range(3):
                    await ws.send_text(f"hello {i}")
                    assert await ws.receive_text() == f"hello {i}"
                assert transport.stats()["connections_in_use"] == 1
            assert transport.stats()["connections_open"] == 0
            assert (await client.get("/")).text == "ok"
            assert transport.stats()["connections_opened"] == 2
            assert_clean(transport)


async def test_101_without_an_upgrade_request_is_refused(raw_server: RawHTTPServer) -> None:
    """A 101 to a request that asked for no upgrade is a protocol error (as in h11)."""
    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=raw_server.url) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError, match="101"):
            await client.get("/status?code=101")
        assert_clean(transport)


async def traced(
    transport: httpx.AsyncBaseTransport, url: str, **options: Any
) -> list[tuple[str, dict[str, Any]]]:
    """The http11.* trace events of one request on `transport`."""
    events: list[tuple[str, dict[str, Any]]] = []

    async def trace(name: str, info: dict[str, Any]) -> None:
        events.append((name, info))

    async with transport, httpx.AsyncClient(transport=transport) as client:
        with contextlib.suppress(httpx.TransportError):
            await client.post(url, content=b"abc", extensions={"trace": trace}, **options)
    return [(name, info) for name, info in events if name.startswith("http11.")]


def shape(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, list[str]]]:
    return [(name, sorted(info)) for name, info in events]


@pytest.mark.parametrize("path", ["/echo", "/chunked?n=3&size=5"])
async def test_trace_events_match_httpcore(raw_server: RawHTTPServer, path: str) -> None:
    """The trace extension gets httpcore's HTTP/1.1 event names and info, in its order."""
    ours = await traced(PoolTransport(), raw_server.url + path)
    stock = await traced(httpx.AsyncHTTPTransport(), raw_server.url + path)
    assert shape(ours) == shape(stock)
    assert [name for name, _ in ours][:2] == [
        "http11.send_request_headers.started",
        "http11.send_request_headers.complete",
    ]
    assert ours[-1][0] == "http11.response_closed.complete"
    assert isinstance(ours[0][1]["request"], httpcore.Request)
    heads = [
        info["return_value"]
        for events in (ours, stock)
        for name, info in events
        if name == "http11.receive_response_headers.complete"
    ]
    assert heads[0] == heads[1]
    assert heads[0][:3] == (b"HTTP/1.1", 200, b"X" if path == "/echo" else b"OK")


async def test_trace_events_on_failure_match_httpcore(raw_server: RawHTTPServer) -> None:
    """A server that closes without answering: the same `.failed` events as httpcore."""
    raw_server.drop_after = 0
    ours = await traced(PoolTransport(), raw_server.url + "/echo")
    stock = await traced(httpx.AsyncHTTPTransport(), raw_server.url + "/echo")
    assert shape(ours) == shape(stock)
    assert "http11.receive_response_headers.failed" in [name for name, _ in ours]


def test_leftover_bytes_make_a_connection_unavailable() -> None:
    """Bytes after a complete response close the connection; late bytes expire an idle one.

    Even a stray CRLF counts: a parser that skips it silently would hand the connection out.
    """
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    stream = FakeStream([response + b"\r\n"], eof=False)
    conn = HTTP11Connection(stream, None)
    _, _, body, _ = run(conn.send(engine_request(httpx.Request("GET", "http://a/"))))
    run(body.aclose())
    assert not conn.is_available()
    assert conn.is_closed()
    assert stream.closed

    stream = FakeStream([response], eof=False)
    conn = HTTP11Connection(stream, None)
    _, _, body, _ = run(conn.send(engine_request(httpx.Request("GET", "http://a/"))))
    run(body.aclose())
    assert conn.is_available()
    assert not conn.has_expired()
    stream.pieces.append(b"stray")  # arrives while the connection is idle
    assert conn.has_expired()


def test_small_request_is_one_write_and_large_ones_are_sliced() -> None:
    """A small request goes out in one write; a large body in slices, never copied whole;
    a streamed body chunk by chunk as it comes."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    stream = FakeStream([ok, ok, ok], eof=False)
    conn = HTTP11Connection(stream, None)

    def exchange(request: httpx.Request) -> list[bytes]:
        stream.written.clear()
        _, _, body, _ = run(conn.send(engine_request(request)))
        run(body.aclose())
        return list(stream.written)

    writes = exchange(httpx.Request("POST", "http://a/", content=b"x" * 1000))
    assert len(writes) == 1
    assert writes[0].endswith(b"\r\n\r\n" + b"x" * 1000)

    big = b"y" * (3 * 1024 * 1024)
    writes = exchange(httpx.Request("POST", "http://a/", content=big))
    assert b"".join(writes).endswith(b"\r\n\r\n" + big)
    assert max(map(len, writes)) <= 256 * 1024

    async def parts() -> AsyncIterator[bytes]:
        for piece in (b"a", b"bb", b"c" * 100_000):
            yield piece

    writes = exchange(httpx.Request("POST", "http://a/", content=parts()))
    assert writes[0].endswith(b"\r\n\r\n1\r\na\r\n")  # the head with the first chunk
    assert writes[1:] == [b"2\r\nbb\r\n", b"186a0\r\n", b"c" * 100_000, b"\r\n", b"0\r\n\r\n"]
