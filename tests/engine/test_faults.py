"""PoolTransport under faults: stale keep-alive, server closes, resets, cancellations, stress."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from ..upstream import serve_upstream
from .conftest import CountingBackend, SlowConnectBackend, assert_clean
from .servers import RawHTTPServer

pytestmark = pytest.mark.anyio


async def test_server_closing_idle_connections_never_fails_a_request(
    raw_server: RawHTTPServer,
) -> None:
    """A server that drops idle connections after 0.05 s causes no failure with a 30 s expiry."""
    raw_server.idle_close = 0.05
    limits = httpx.Limits(keepalive_expiry=30)
    async with (
        PoolTransport(limits=limits) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        for _ in range(15):
            results = await asyncio.gather(*(client.get(raw_server.url) for _ in range(3)))
            assert all(r.text == "ok" for r in results)
            await asyncio.sleep(0.08)
        assert transport.stats()["errors"] == {}
        assert_clean(transport)
    assert raw_server.accepted >= 15


async def test_uvicorn_keep_alive_timeout_never_fails_a_request() -> None:
    """uvicorn closing idle connections after 0.2 s (client expiry 30 s) causes no failure."""
    with serve_upstream(keep_alive=0.2) as seen:
        limits = httpx.Limits(keepalive_expiry=30)
        async with (
            PoolTransport(limits=limits) as transport,
            httpx.AsyncClient(transport=transport, base_url=seen.url) as client,
        ):
            for _ in range(6):
                results = await asyncio.gather(*(client.get("/") for _ in range(4)))
                assert all(r.json()["path"] == "/" for r in results)
                await asyncio.sleep(0.3)
            assert transport.stats()["errors"] == {}
            assert_clean(transport)
    assert seen.connections >= 6


async def test_server_closing_after_n_responses_all_succeed(raw_server: RawHTTPServer) -> None:
    """A server that silently closes after every 3 responses still serves every request."""
    raw_server.close_after = 3
    async with PoolTransport() as transport, httpx.AsyncClient(transport=transport) as client:
        for _ in range(60):
            assert (await client.get(raw_server.url)).text == "ok"
        results = await asyncio.gather(*(client.get(raw_server.url) for _ in range(30)))
        assert all(r.text == "ok" for r in results)
        assert transport.stats()["errors"] == {}
        assert_clean(transport)


async def test_reused_connection_dying_before_response_is_retried_for_get(
    raw_server: RawHTTPServer,
) -> None:
    """A reused connection that closes without answering is retried once for a GET."""
    raw_server.drop_after = 1
    async with PoolTransport() as transport, httpx.AsyncClient(transport=transport) as client:
        for _ in range(5):
            assert (await client.get(raw_server.url)).text == "ok"
        stats = transport.stats()
    assert stats["retries"] == 4
    assert stats["errors"] == {}
    assert raw_server.accepted == 5


async def test_post_is_not_retried_without_retry_post(raw_server: RawHTTPServer) -> None:
    """A POST on a reused connection that dies before the response raises."""
    raw_server.drop_after = 1
    async with PoolTransport() as transport, httpx.AsyncClient(transport=transport) as client:
        await client.get(raw_server.url)
        with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
            await client.post(f"{raw_server.url}/echo", content=b"abc")
        assert transport.stats()["retries"] == 0
        assert transport.stats()["errors"] == {"RemoteProtocolError": 1}
        assert_clean(transport)


async def test_post_is_retried_with_retry_post(raw_server: RawHTTPServer) -> None:
    """With retry_post=True a POST with a bytes body is retried on a fresh connection."""
    raw_server.drop_after = 1
    async with (
        PoolTransport(retry_post=True) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        await client.get(raw_server.url)
        assert (await client.post(f"{raw_server.url}/echo", content=b"abc")).text == "3"
        assert transport.stats()["retries"] == 1


async def test_streamed_upload_is_never_retried(raw_server: RawHTTPServer) -> None:
    """A body from an async iterator cannot be replayed, so even retry_post does not retry it."""
    raw_server.drop_after = 1

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"

    async with (
        PoolTransport(retry_post=True) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        await client.get(raw_server.url)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.put(f"{raw_server.url}/echo", content=body())
        assert transport.stats()["retries"] == 0


async def test_fresh_connection_failure_is_not_retried(raw_server: RawHTTPServer) -> None:
    """A request that fails on a brand-new connection raises without a retry."""
    raw_server.drop_after = 0
    async with PoolTransport() as transport, httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(raw_server.url)
        assert transport.stats()["retries"] == 0
    assert raw_server.accepted == 1


async def test_reset_mid_body_raises_read_error_and_frees_the_slot(
    raw_server: RawHTTPServer,
) -> None:
    """A TCP reset in the middle of a body raises httpx.ReadError and leaks nothing."""
    async with PoolTransport() as transport, httpx.AsyncClient(transport=transport) as client:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get(f"{raw_server.url}/reset")
        assert_clean(transport)
        assert transport.stats()["connections_open"] == 0
        assert (await client.get(raw_server.url)).text == "ok"


async def test_cancel_while_waiting_for_a_connection(raw_server: RawHTTPServer) -> None:
    """Requests cancelled while queued for a connection leave no waiter and no slot behind."""
    limits = httpx.Limits(max_connections=2)
    async with (
        PoolTransport(limits=limits) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        tasks = [asyncio.create_task(client.get(f"{raw_server.url}/slow?d=0.2")) for _ in range(30)]
        await asyncio.sleep(0.05)
        assert transport.stats()["waiters"] == 28
        for task in tasks[2:]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(r.status_code == 200 for r in results[:2])  # type: ignore[union-attr]
        assert all(isinstance(r, asyncio.CancelledError) for r in results[2:])
        assert_clean(transport)
        assert (await client.get(raw_server.url)).text == "ok"


async def test_cancel_while_connecting(raw_server: RawHTTPServer) -> None:
    """Requests cancelled during connect give their slot back and leave no half-open connection."""
    backend = SlowConnectBackend(delay=0.1)
    limits = httpx.Limits(max_connections=3)
    async with (
        PoolTransport(limits=limits, network_backend=backend) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        tasks = [asyncio.create_task(client.get(raw_server.url)) for _ in range(10)]
        await asyncio.sleep(0.03)
        assert transport.stats()["connections_connecting"] == 3
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert_clean(transport)
        assert transport.stats()["connections_open"] == 0
        backend.delay = 0
        results = await asyncio.gather(*(client.get(raw_server.url) for _ in range(6)))
        assert all(r.text == "ok" for r in results)
        assert transport.stats()["connections_open"] <= 3


async def test_cancel_while_reading(raw_server: RawHTTPServer) -> None:
    """Requests cancelled while waiting for headers or mid-body close their connections."""
    limits = httpx.Limits(max_connections=4)
    backend = CountingBackend()
    async with (
        PoolTransport(limits=limits, network_backend=backend) as transport,
        httpx.AsyncClient(transport=transport) as client,
    ):
        tasks = [asyncio.create_task(client.get(f"{raw_server.url}/slow?d=1")) for _ in range(8)]
        await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert_clean(transport)

        async def read_some() -> None:
            async with client.stream("GET", f"{raw_server.url}/chunked?n=400&size=100") as response:
                async for _ in response.aiter_raw():
                    await asyncio.sleep(0.001)

        readers: list[asyncio.Task[None]] = [asyncio.create_task(read_some()) for _ in range(8)]
        await asyncio.sleep(0.05)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        assert_clean(transport)
        assert (await client.get(raw_server.url)).text == "ok"
    assert backend.max_open <= 4
    assert backend.open == 0


async def test_cancellation_storm_with_pool_timeouts(raw_server: RawHTTPServer) -> None:
    """Many waves of cancels and pool timeouts against a tiny pool end with nothing leaked."""
    limits = httpx.Limits(max_connections=3)
    timeout = httpx.Timeout(2.0, pool=0.03)
    backend = CountingBackend()
    async with (
        PoolTransport(limits=limits, network_backend=backend) as transport,
        httpx.AsyncClient(transport=transport, timeout=timeout) as client,
    ):
        for wave in range(5):
            tasks = [
                asyncio.create_task(client.get(f"{raw_server.url}/slow?d=0.02")) for _ in range(40)
            ]
            await asyncio.sleep(0.01 * wave)
            for task in tasks[::3]:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            kinds = {type(r) for r in results}
            assert kinds <= {httpx.Response, asyncio.CancelledError, httpx.PoolTimeout}
        assert_clean(transport)
    assert backend.max_open <= 3
    assert backend.open == 0


async def test_randomized_stress_leaks_nothing(raw_server: RawHTTPServer) -> None:
    """A seeded random mix of timeouts, cancels, dropped streams and server closes leaks nothing."""
    rng = random.Random(1234)
    raw_server.close_after = 7
    raw_server.idle_close = 0.05
    limits = httpx.Limits(max_connections=6, max_keepalive_connections=3, keepalive_expiry=1)
    timeout = httpx.Timeout(1.0, pool=0.05)
    failures: list[BaseException] = []

    async def one(i: int) -> None:
        choice = rng.random()
        try:
            if choice < 0.2:
                await client.get(f"{raw_server.url}/slow?d={rng.random() / 20:.3f}")
            elif choice < 0.35:
                async with client.stream(
                    "GET", f"{raw_server.url}/chunked?n=50&size=200"
                ) as response:
                    async for _ in response.aiter_raw():
                        if rng.random() < 0.1:
                            break
            elif choice < 0.45:
                await client.post(f"{raw_server.url}/echo", content=b"z" * rng.randint(0, 50_000))
            elif choice < 0.5:
                await client.get(f"{raw_server.url}/reset")
            else:
                await client.get(raw_server.url)
        except (
            httpx.PoolTimeout,
            httpx.ReadError,
            httpx.RemoteProtocolError,
            asyncio.CancelledError,
        ):
            pass
        except BaseException as exc:  # anything else is a bug
            failures.append(exc)

    deadline = time.monotonic() + 3
    backend = CountingBackend()
    async with (
        PoolTransport(limits=limits, network_backend=backend) as transport,
        httpx.AsyncClient(transport=transport, timeout=timeout) as client,
    ):
        rounds = 0
        while time.monotonic() < deadline and rounds < 60:
            rounds += 1
            tasks = [asyncio.create_task(one(i)) for i in range(rng.randint(1, 30))]
            await asyncio.sleep(rng.random() / 50)
            for task in tasks:
                if rng.random() < 0.15:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert failures == []
        assert_clean(transport)
        stats = transport.stats()
        assert stats["connections_open"] <= 6
        assert stats["connections_idle"] <= 3
        assert (await client.get(raw_server.url)).text == "ok"
    assert backend.max_open <= 6
    assert backend.open == 0
