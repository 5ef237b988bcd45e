"""The policy under sync clients (`pool.sync_client`, for `def` routes): the same
retries, limits and breaker as the async clients, on the same state."""

from __future__ import annotations

import socket
import time
from typing import Annotated

import anyio
import anyio.to_thread
import httpx
import httpx2
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

import httpool

from .conftest import RedisServer
from .stub import Stub, most_in_window

pytestmark = pytest.mark.anyio

SyncApi = Annotated[httpx.Client, httpool.sync_client("api")]


async def test_a_sync_client_retries_a_429_after_its_retry_after(stub: Stub) -> None:
    """429 with Retry-After: 1, then 200: the sync client returns the 200, sent a second
    later, and the retry is counted with the provider's."""
    stub.plan.append((429, {"retry-after": "1"}))
    provider = httpool.Provider("api", base_url=stub.url, retry=True)
    async with httpool.ClientPool(provider) as p:
        client = p.sync_client("api")
        response = await anyio.to_thread.run_sync(client.get, "/a")
        stats = p.stats()["api"]
    assert response.status_code == 200
    first, second = stub.times()
    assert second - first >= 0.95
    assert stats["retries_by_reason"] == {"429": 1}


async def test_sync_and_async_clients_share_one_rate_limit(stub: Stub) -> None:
    """10/second: ten async requests, then five from a sync client in a thread: these
    wait for the window, and no second at the stub holds more than ten."""
    provider = httpool.Provider("api", base_url=stub.url, rate_limit="10/second")
    async with httpool.ClientPool(provider) as p:
        async_client, sync_client = p.client("api"), p.sync_client("api")
        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(async_client.get, "/a")
        started = time.monotonic()
        for _ in range(5):
            response = await anyio.to_thread.run_sync(sync_client.get, "/b")
            assert response.status_code == 200
        waited = time.monotonic() - started
        stats = p.stats()["api"]
    assert waited >= 0.5
    assert most_in_window(stub.times(), 1.0) <= 10
    assert stats["rate_limit"]["admitted"] == 15


async def test_a_sync_client_waits_for_a_concurrency_slot_an_async_one_holds(
    stub: Stub,
) -> None:
    """max_concurrency=1: while an async request is in flight, the sync one waits; a
    sync streamed response holds its slot until it is closed."""
    stub.delay = 0.3
    provider = httpool.Provider("api", base_url=stub.url, max_concurrency=1)
    async with httpool.ClientPool(provider) as p:
        sync_client = p.sync_client("api")
        async with anyio.create_task_group() as group:
            group.start_soon(p.client("api").get, "/a")
            await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(sync_client.get, "/b")

        def stream_then_close() -> float:
            with sync_client.stream("GET", "/c") as response:
                assert p.stats()["api"]["concurrency"]["in_flight"] == 1
                time.sleep(0.1)
                response.read()
            return time.monotonic()

        closed_at = await anyio.to_thread.run_sync(stream_then_close)
        assert p.stats()["api"]["concurrency"]["in_flight"] == 0
    assert stub.most_active == 1
    (a, _, _, _), (b, _, _, _), (c, _, _, _) = stub.arrivals
    assert b - a >= 0.25  # the sync request went when the async one ended
    assert closed_at > c


async def test_an_open_breaker_fails_a_sync_client_at_once(stub: Stub) -> None:
    """Three 500s drawn by the async client open the breaker; the sync client's request
    fails at once, unsent."""
    stub.respond = lambda seen: (500, {})
    breaker = httpool.Breaker(failures=3, window=10.0, cooldown=5.0)
    provider = httpool.Provider("api", base_url=stub.url, breaker=breaker)
    async with httpool.ClientPool(provider) as p:
        for _ in range(3):
            await p.client("api").get("/a")
        with pytest.raises(httpool.CircuitOpenError, match="provider 'api'"):
            await anyio.to_thread.run_sync(p.sync_client("api").get, "/b")
    assert len(stub.arrivals) == 3


async def test_a_sync_client_failures_open_the_breaker_for_async_clients(stub: Stub) -> None:
    """The other way round: 500s drawn by the sync client open the breaker the async
    client sees."""
    stub.respond = lambda seen: (500, {})
    breaker = httpool.Breaker(failures=3, window=10.0, cooldown=5.0)
    provider = httpool.Provider("api", base_url=stub.url, breaker=breaker)
    async with httpool.ClientPool(provider) as p:
        for _ in range(3):
            await anyio.to_thread.run_sync(p.sync_client("api").get, "/a")
        with pytest.raises(httpool.CircuitOpenError):
            await p.client("api").get("/b")
        assert p.stats()["api"]["breaker"]["state"] == "open"


async def test_a_sync_client_on_the_event_loops_thread_says_so(stub: Stub) -> None:
    """Called on the loop's own thread, a sync client with a policy raises a clear error
    instead of waiting forever on the loop it blocks."""
    provider = httpool.Provider("api", base_url=stub.url, rate_limit="10/second")
    async with httpool.ClientPool(provider) as p:
        with pytest.raises(RuntimeError, match="cannot be called on the event loop's thread"):
            p.sync_client("api").get("/a")
    assert stub.arrivals == []


async def test_an_httpx2_sync_client_has_the_policy_too(stub: Stub) -> None:
    """httpx2.Client: the 429 retried, and a limit not reached in time raises httpx2's
    PoolTimeout naming the provider."""
    stub.plan.append((429, {"retry-after": "0"}))
    provider = httpool.Provider(
        "api",
        base_url=stub.url,
        retry=True,
        rate_limit="2/second",
        timeout=httpx.Timeout(5.0, pool=0.3),
    )
    async with httpool.ClientPool(provider) as p:
        client = p.sync_client("api", httpx2.Client)
        response = await anyio.to_thread.run_sync(client.get, "/a")
        assert response.status_code == 200
        with pytest.raises(httpx2.PoolTimeout, match="provider 'api'.*rate_limit"):
            await anyio.to_thread.run_sync(client.get, "/b")
        stats = p.stats()["api"]
    assert stats["retries_by_reason"] == {"429": 1}
    assert len(stub.arrivals) == 2


async def test_a_sync_client_takes_its_admissions_from_the_shared_redis_limit(
    stub: Stub, redis_server: RedisServer
) -> None:
    """With a Redis limit, a sync client's requests are counted in Redis with the async
    ones: another pool on the same key finds the window full."""

    def provider() -> httpool.Provider:
        limit = httpool.RateLimit("5/second", storage=redis_server.url, key="test:sync")
        return httpool.Provider(
            "api", base_url=stub.url, rate_limit=limit, timeout=httpx.Timeout(5.0, pool=0.3)
        )

    async with httpool.ClientPool(provider()) as first, httpool.ClientPool(provider()) as other:
        client = first.sync_client("api")
        for _ in range(5):
            await anyio.to_thread.run_sync(client.get, "/a")
        with pytest.raises(httpool.LimitTimeout):
            await other.client("api").get("/b")
    assert len(stub.arrivals) == 5


def test_a_def_route_retries_through_the_sync_client(stub: Stub) -> None:
    """In a FastAPI `def` route (a worker thread), the sync client retries a 503."""
    stub.plan.append((503, {"retry-after": "0"}))
    provider = httpool.Provider("api", base_url=stub.url, retry=True)
    app = FastAPI(lifespan=httpool.lifespan(provider))

    @app.get("/call")
    def call(client: SyncApi) -> int:
        return client.get("/a").status_code

    with TestClient(app) as test_client:
        assert test_client.get("/call").json() == 200
    assert len(stub.arrivals) == 2


async def test_a_sync_client_retries_a_refused_connection_and_the_breaker_counts_it() -> None:
    """Nothing listens: the sync request is tried twice (a connect error is retried for
    any method), both failures count against the breaker, which opens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    provider = httpool.Provider(
        "api",
        base_url=f"http://127.0.0.1:{port}",
        retry=httpool.Retry(attempts=2, backoff_initial=0.01, backoff_max=0.01),
        breaker=httpool.Breaker(failures=2, window=10.0, cooldown=5.0),
    )
    async with httpool.ClientPool(provider) as p:
        with pytest.raises(httpx.ConnectError):
            await anyio.to_thread.run_sync(p.sync_client("api").post, "/a")
        stats = p.stats()["api"]
    assert stats["retries_by_reason"] == {"connect": 1}
    assert stats["breaker"]["state"] == "open"
