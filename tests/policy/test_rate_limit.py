"""`rate_limit` in memory: admissions per moving window, waiting, costs."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

import httpool

from .stub import Stub, most_in_window

pytestmark = pytest.mark.anyio


def provider(stub: Stub, rate_limit: object, pool_timeout: float = 10.0) -> httpool.Provider:
    return httpool.Provider(
        "api",
        base_url=stub.url,
        rate_limit=rate_limit,  # type: ignore[arg-type]
        timeout=httpx.Timeout(5.0, pool=pool_timeout),
    )


async def burst(client: httpx.AsyncClient, n: int, **kwargs: object) -> list[int]:
    codes: list[int] = []

    async def call() -> None:
        codes.append((await client.get("/a", **kwargs)).status_code)  # type: ignore[arg-type]

    async with anyio.create_task_group() as group:
        for _ in range(n):
            group.start_soon(call)
    return codes


async def test_a_burst_waits_and_no_window_of_the_limits_length_exceeds_it(stub: Stub) -> None:
    """45 requests at 20/second: all succeed, and no 1 s window at the stub holds 21,
    wherever it starts."""
    # The first 20 open 20 connections at once: under a loaded full run their arrivals
    # lagged their admission by more than the default 50 ms margin (a window of 34 at
    # the stub), as in the shared-limit tests, whose margin this is.
    limit = httpool.RateLimit("20/second", margin=0.2)
    async with httpool.ClientPool(provider(stub, limit)) as p:
        started = time.monotonic()
        codes = await burst(p.client("api"), 45)
        elapsed = time.monotonic() - started
        stats = p.stats()["api"]
    assert codes == [200] * 45
    assert most_in_window(stub.times(), 1.0) == 20
    assert elapsed >= 2.0
    assert stats["rate_limit"]["admitted"] == 45
    assert stats["rate_limit"]["storage"] == "memory"
    assert stats["limit_wait_seconds"]["rate_limit"] > 1.0


async def test_a_request_not_admitted_within_the_pool_timeout_fails_naming_the_provider(
    stub: Stub,
) -> None:
    """Two per second and a 0.3 s pool timeout: the third request fails in ~0.3 s."""
    async with httpool.ClientPool(provider(stub, "2/second", pool_timeout=0.3)) as p:
        client = p.client("api")
        await client.get("/a")
        await client.get("/a")
        started = time.monotonic()
        with pytest.raises(httpx.PoolTimeout, match="provider 'api'.*rate_limit") as info:
            await client.get("/a")
        assert 0.25 <= time.monotonic() - started < 1.0
    assert isinstance(info.value, httpool.LimitTimeout)
    assert len(stub.arrivals) == 2


async def test_a_request_cost_counts_instead_of_one(stub: Stub) -> None:
    """At 100 units per second, two requests of cost 60 are a second apart."""
    async with httpool.ClientPool(provider(stub, "100/second")) as p:
        client = p.client("api")
        await client.get("/a", extensions={"httpool.cost": 60})
        await client.get("/a", extensions={"httpool.cost": 60})
        with pytest.raises(httpool.LimitTimeout, match="cost 101 is more than the whole limit"):
            await client.get("/a", extensions={"httpool.cost": 101})
        with pytest.raises(TypeError, match="httpool.cost"):
            await client.get("/a", extensions={"httpool.cost": "lots"})
    first, second = stub.times()
    assert second - first >= 1.0


async def test_rate_limit_and_max_concurrency_together(stub: Stub) -> None:
    """Both limits hold at once."""
    stub.delay = 0.05
    p_ = httpool.Provider("api", base_url=stub.url, rate_limit="20/second", max_concurrency=3)
    async with httpool.ClientPool(p_) as p:
        codes = await burst(p.client("api"), 30)
    assert codes == [200] * 30
    assert stub.most_active <= 3
    assert most_in_window(stub.times(), 1.0) <= 20


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("lots", "not a rate"),
        ("0/second", "at least 1"),
        (5, "expected a str"),
    ],
)
def test_bad_rate_limits_name_the_field(value: object, match: str) -> None:
    """A rate limit that cannot work fails at construction."""
    with pytest.raises(httpool.ConfigError, match=match):
        httpool.Provider("api", rate_limit=value)  # type: ignore[arg-type]


def test_a_storage_url_with_a_password_is_not_shown() -> None:
    """The repr and the errors mask the Redis password."""
    limit = httpool.RateLimit("5/second", storage="redis://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in repr(limit)
    with pytest.raises(httpool.ConfigError) as info:
        httpool.RateLimit("5/second", storage="mysql://:hunter2@db/0")
    assert "hunter2" not in str(info.value)


def test_the_local_window_counts_costs_over_its_span() -> None:
    """Ten units per second: 6 + 4 go, the next 5 wait until the first 6 have left."""
    from httpool._policy._ratelimit import LocalWindow

    window = LocalWindow(10, 1.0)
    assert window.admit(6) is None
    assert window.admit(4) is None
    retry_at = window.admit(5)
    assert retry_at is not None
    assert 0.9 < retry_at - time.time() <= 1.0


async def test_an_httpx2_client_raises_httpx2s_pool_timeout(stub: Stub) -> None:
    """Through an httpx2.AsyncClient, a request not admitted in time raises
    httpx2.PoolTimeout (httpool's LimitTimeout's nearest httpx2 kin), naming the provider."""
    import httpx2

    async with httpool.ClientPool(provider(stub, "1/second", pool_timeout=0.2)) as p:
        client = p.client("api", httpx2.AsyncClient)
        await client.get("/a")
        with pytest.raises(httpx2.PoolTimeout, match="provider 'api'.*rate_limit"):
            await client.get("/a")
