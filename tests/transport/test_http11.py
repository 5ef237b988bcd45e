"""PoolTransport over HTTP/1.1 against real servers: reuse, limits, timeouts, bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from httpool._transport import PoolTransport

from .conftest import assert_clean
from .servers import RawHTTPServer, Seen

pytestmark = pytest.mark.anyio


async def test_keep_alive_reuses_one_connection(uvicorn_upstream: tuple[Seen, str]) -> None:
    """A hundred sequential requests travel over a single TCP connection."""
    seen, url = uvicorn_upstream
    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=url) as client,
    ):
        for _ in range(100):
            response = await client.get("/")
            assert response.text == "ok"
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


async def test_max_connections_counted_at_uvicorn(uvicorn_upstream: tuple[Seen, str]) -> None:
    """uvicorn sees at most max_connections distinct client connections under concurrency 50."""
    seen, url = uvicorn_upstream
    limits = httpx.Limits(max_connections=5)
    async with (
        PoolTransport(limits=limits) as transport,
        httpx.AsyncClient(transport=transport, base_url=url) as client,
    ):
        for _ in range(3):
            await asyncio.gather(*(client.get("/slow?d=0.01") for _ in range(50)))
    assert seen.connections <= 5
    assert seen.requests == 150


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


async def test_uploads_bytes_and_async_iterator(uvicorn_upstream: tuple[Seen, str]) -> None:
    """Bytes bodies and async-iterator (chunked) bodies both reach the server whole."""
    _, url = uvicorn_upstream

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"y" * 1000
            await asyncio.sleep(0)

    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=url) as client,
    ):
        assert (await client.post("/echo", content=b"x" * 300_000)).text == "300000"
        assert (await client.post("/echo", content=parts())).text == "100000"
        assert (await client.put("/echo", json={"a": 1})).text == "7"
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
