"""PoolTransport's lifecycle: closing, event-loop binding, stats and logging."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from ..upstream import Upstream
from .servers import RawHTTPServer

STATS_KEYS = {
    "connections_open",
    "connections_idle",
    "connections_in_use",
    "connections_connecting",
    "connections_opened",
    "connections_closed",
    "requests_in_flight",
    "waiters",
    "requests_served",
    "retries",
    "streams_open",
    "goaways",
    "streams_resent",
    "errors",
    "origins",
}


@pytest.mark.anyio
async def test_aclose_closes_everything_and_refuses_later_requests(
    raw_server: RawHTTPServer,
) -> None:
    """aclose() closes idle and busy connections, fails waiters, and later requests raise."""
    limits = httpx.Limits(max_connections=2)
    transport = PoolTransport(limits=limits)
    client = httpx.AsyncClient(transport=transport, base_url=raw_server.url)
    await client.get("/")
    busy = await client.send(client.build_request("GET", "/bytes?n=1000000"), stream=True)
    other = await client.send(client.build_request("GET", "/bytes?n=1000000"), stream=True)
    waiter = asyncio.create_task(client.get("/"))
    await asyncio.sleep(0.02)
    assert transport.stats()["waiters"] == 1
    await transport.aclose()
    await transport.aclose()  # twice is fine
    with pytest.raises(RuntimeError, match="transport is closed"):
        await waiter
    with pytest.raises(RuntimeError, match="transport is closed"):
        await client.get("/")
    await busy.aclose()
    await other.aclose()
    stats = transport.stats()
    assert stats["connections_open"] == 0
    assert stats["requests_in_flight"] == 0
    for _ in range(50):
        if raw_server.open == 0:
            break
        await asyncio.sleep(0.01)
    assert raw_server.open == 0


@pytest.mark.anyio
async def test_async_with_closes_the_transport(raw_server: RawHTTPServer) -> None:
    """Leaving `async with PoolTransport()` closes its connections."""
    async with PoolTransport() as transport:
        response = await transport.handle_async_request(httpx.Request("GET", raw_server.url))
        await response.aread()
        await response.aclose()
        assert transport.stats()["connections_idle"] == 1
    assert transport.stats()["connections_open"] == 0


def test_use_from_another_event_loop_says_what_to_do(upstream: Upstream) -> None:
    """A transport used by a second event loop fails with a message naming the cause and fix."""
    url = upstream.url
    transport = PoolTransport()
    client = httpx.AsyncClient(transport=transport)

    async def one() -> int:
        response = await client.get(url, headers={"connection": "close"})
        return response.status_code

    assert asyncio.run(one()) == 200
    with pytest.raises(RuntimeError, match="another event loop") as info:
        asyncio.run(one())
    assert "Event loop is closed" not in str(info.value)
    assert "pool" in str(info.value)
    asyncio.run(client.aclose())


@pytest.mark.anyio
async def test_transport_made_inside_a_loop_is_bound_to_it() -> None:
    """A transport constructed while a loop runs records that loop at once."""
    transport = PoolTransport()
    assert transport.engine._loop is asyncio.get_running_loop()
    await transport.aclose()


def test_needs_http1_or_http2() -> None:
    """Turning off both HTTP versions is refused at construction."""
    with pytest.raises(ValueError, match="http1=True or http2=True"):
        PoolTransport(http1=False, http2=False)


@pytest.mark.anyio
async def test_stats_are_json_ready_with_per_origin_counts(raw_server: RawHTTPServer) -> None:
    """stats() has the documented keys, survives json.dumps, and breaks connections down by origin."""
    async with PoolTransport() as transport, httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", f"{raw_server.url}/bytes?n=10") as response:
            stats = transport.stats()
            assert stats["connections_in_use"] == 1
            assert stats["requests_in_flight"] == 1
            await response.aread()
        stats = json.loads(json.dumps(transport.stats()))
    assert set(stats) == STATS_KEYS
    assert stats["origins"] == {
        f"http://127.0.0.1:{raw_server.port}": {"open": 1, "idle": 1, "in_use": 0}
    }
    assert stats["requests_served"] == 1


@pytest.mark.anyio
async def test_no_info_logs_and_no_secrets_in_debug_logs(
    raw_server: RawHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests log nothing at INFO or above, and DEBUG lines never show queries or header values."""
    raw_server.drop_after = 1
    with caplog.at_level(logging.DEBUG):
        async with PoolTransport() as transport, httpx.AsyncClient(transport=transport) as client:
            for _ in range(3):
                await client.get(
                    f"{raw_server.url}/?token=s3cret", headers={"authorization": "Bearer s3cret"}
                )
    ours = [r for r in caplog.records if r.name.startswith("httpool")]
    assert ours, "expected DEBUG lines from httpool"
    assert all(r.levelno < logging.INFO for r in ours)
    assert not any("s3cret" in r.getMessage() for r in ours)
