"""The circuit breaker: opens on failures, fails fast, one trial request closes it."""

from __future__ import annotations

import socket
import time

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

import httpool

from .stub import Stub

pytestmark = pytest.mark.anyio

BREAKER = httpool.Breaker(failures=3, window=10.0, cooldown=0.5)


async def test_the_breaker_opens_fails_fast_and_closes_after_recovery(stub: Stub) -> None:
    """Three 500s open it; then requests fail at once, unsent, naming the provider and
    the time to the trial; after the cooldown one trial goes, and its 200 closes it."""
    stub.respond = lambda seen: (500, {})
    provider = httpool.Provider("api", base_url=stub.url, breaker=BREAKER)
    async with httpool.ClientPool(provider) as p:
        client = p.client("api")
        for _ in range(3):
            assert (await client.get("/a")).status_code == 500
        assert p.stats()["api"]["breaker"]["state"] == "open"
        started = time.monotonic()
        with pytest.raises(
            httpool.CircuitOpenError, match=r"provider 'api'.*trial request in 0\.\d"
        ) as info:
            await client.get("/a")
        assert time.monotonic() - started < 0.1
        assert 0 < info.value.retry_in <= 0.5
        assert len(stub.arrivals) == 3
        stub.respond = None  # the provider recovers
        await anyio.sleep(0.55)
        stub.delay = 0.2
        results: list[object] = []

        async def call() -> None:
            try:
                results.append((await client.get("/a")).status_code)
            except httpool.CircuitOpenError:
                results.append("fast-fail")

        async with anyio.create_task_group() as group:
            group.start_soon(call)  # the trial
            await anyio.sleep(0.05)
            group.start_soon(call)  # during the trial: fails fast
        assert sorted(map(str, results)) == ["200", "fast-fail"]
        stub.delay = 0.0
        assert p.stats()["api"]["breaker"]["state"] == "closed"
        assert (await client.get("/a")).status_code == 200
        assert p.stats()["api"]["breaker"]["opened"] == 1


async def test_a_failed_trial_opens_the_breaker_again(stub: Stub) -> None:
    """The trial's 503 reopens the circuit for another cooldown."""
    stub.respond = lambda seen: (503, {})
    provider = httpool.Provider("api", base_url=stub.url, breaker=BREAKER)
    async with httpool.ClientPool(provider) as p:
        client = p.client("api")
        for _ in range(3):
            await client.get("/a")
        await anyio.sleep(0.55)
        assert (await client.get("/a")).status_code == 503  # the trial
        with pytest.raises(httpool.CircuitOpenError):
            await client.get("/a")
        assert p.stats()["api"]["breaker"]["opened"] == 2
    assert len(stub.arrivals) == 4


async def test_connect_failures_open_the_breaker() -> None:
    """Nothing listening: three connect errors open it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = httpool.Provider("api", base_url=f"http://127.0.0.1:{port}", breaker=BREAKER)
    async with httpool.ClientPool(provider) as p:
        client = p.client("api")
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await client.get("/a")
        with pytest.raises(httpool.CircuitOpenError):
            await client.get("/a")


async def test_4xx_answers_do_not_count(stub: Stub) -> None:
    """429s and 404s are answers of a working provider: the circuit stays closed."""
    stub.respond = lambda seen: (429, {})
    provider = httpool.Provider("api", base_url=stub.url, breaker=BREAKER)
    async with httpool.ClientPool(provider) as p:
        for _ in range(5):
            await p.client("api").get("/a")
        assert p.stats()["api"]["breaker"]["state"] == "closed"


def test_an_open_breaker_is_a_503_with_retry_after_and_shows_in_health(stub: Stub) -> None:
    """Through the error handlers an open circuit answers 503 with Retry-After; /health
    shows the breaker's state."""
    stub.respond = lambda seen: (500, {})
    breaker = httpool.Breaker(failures=2, cooldown=30.0)
    provider = httpool.Provider("api", base_url=stub.url, breaker=breaker, health_path="/health")
    app = FastAPI(lifespan=httpool.lifespan(provider))
    httpool.install_error_handlers(app)
    app.include_router(httpool.router(prefix="/ops"))

    @app.get("/x")
    async def x(client: httpx.AsyncClient = httpool.client("api")) -> dict[str, int]:  # noqa: B008
        response = await client.get("/a")
        return {"status": response.status_code}

    with TestClient(app) as tc:
        assert tc.get("/x").json() == {"status": 500}
        assert tc.get("/x").json() == {"status": 500}
        response = tc.get("/x")
        assert response.status_code == 503
        assert 29 <= int(response.headers["retry-after"]) <= 30
        assert response.json()["error"]["kind"] == "circuit_open"
        assert response.json()["error"]["provider"] == "api"
        health = tc.get("/ops/health")
        assert health.status_code == 503
        entry = health.json()["providers"]["api"]
        assert entry["breaker"]["state"] == "open"
        assert entry["error"] == "CircuitOpenError"


def test_an_upstream_429_from_raise_for_status_is_a_503_with_its_retry_after(stub: Stub) -> None:
    """`raise_for_status()` on a 429 with Retry-After: 7 answers 503, Retry-After: 7."""
    stub.respond = lambda seen: (429, {"retry-after": "7"})
    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("api", base_url=stub.url)))
    httpool.install_error_handlers(app)

    @app.get("/x")
    async def x(client: httpx.AsyncClient = httpool.client("api")) -> dict[str, int]:  # noqa: B008
        (await client.get("/a")).raise_for_status()
        return {}

    with TestClient(app) as tc:
        response = tc.get("/x")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        assert response.json()["error"]["kind"] == "upstream_rate_limited"
        assert response.json()["error"]["upstream_status"] == 429
        stub.respond = lambda seen: (500, {})
        assert tc.get("/x").status_code == 502


def test_a_limit_timeout_is_a_503_with_retry_after(stub: Stub) -> None:
    """A rate limit not reached within the pool timeout answers 503 naming the limit."""
    provider = httpool.Provider(
        "api", base_url=stub.url, rate_limit="1/minute", timeout=httpx.Timeout(5.0, pool=0.2)
    )
    app = FastAPI(lifespan=httpool.lifespan(provider))
    httpool.install_error_handlers(app)

    @app.get("/x")
    async def x(client: httpx.AsyncClient = httpool.client("api")) -> dict[str, int]:  # noqa: B008
        return {"status": (await client.get("/a")).status_code}

    with TestClient(app) as tc:
        assert tc.get("/x").status_code == 200
        response = tc.get("/x")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["kind"] == "limit_timeout"
