"""Leases of the Redis rate limit (the `limits` library's moving window), against a real
redis-server: what a process holds is admitted without Redis, what it does not use is
counted as unused, a dead process's units leave the window in time, a lease never takes
more than is left, and Redis stopping mid-lease."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
import redis.asyncio

import httpool
from httpool._policy._lease import LEASE_MIN_WINDOW
from httpool._policy._ratelimit import RateLimiter

from .conftest import RedisServer
from .stub import Stub

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
KEY = "test:lease"
#: A window long enough for leases, and the Redis key of its moving window under KEY.
LIMIT = "100 per 20 seconds"
ENTRIES = f"LIMITS:{KEY}:100/20second"  # the library prefixes its keys


def limiter(url: str, limit: str = LIMIT) -> RateLimiter:
    return RateLimiter(httpool.RateLimit(limit, storage=url, key=KEY, margin=0.05), "api")


async def nothing() -> None:
    """No provider reset to wait for."""


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client of the same Redis, to read what the limit keeps there."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def used(raw: redis.asyncio.Redis) -> int:
    """The units in the moving window: one timestamp each."""
    return int(await raw.llen(ENTRIES))


async def test_the_window_is_the_limits_plus_hold_and_margin_in_whole_seconds() -> None:
    """A 20 s limit with a 50 ms margin: the library's window is 21 s and a lease is held
    for 0.95 s; a per-second limit has no leases and keeps its own window."""
    leased = limiter("redis://127.0.0.1:1/0")
    assert leased._log is not None
    assert leased._log.span == 21
    assert leased._log.hold == pytest.approx(0.95)
    single = limiter("redis://127.0.0.1:1/0", "100/second")
    assert single._log is not None
    assert (single._log.span, single._log.hold) == (1, 0.0)
    assert single._lease_size(single._log, 1) == (1, 0.0)
    assert LEASE_MIN_WINDOW == 20


async def test_a_lease_is_admitted_without_redis_and_what_is_left_is_unused(
    redis_server: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """A lease of 10: five admissions from it leave Redis at 10 units; once its hold has
    ended, its 5 left are counted unused and the next admission takes a new lease; the
    other process then finds exactly the rest of the limit."""
    a = limiter(redis_server.url)
    assert a._log is not None
    # held for 0.5 s: no lease is taken ahead meanwhile
    assert await a._log.take(10, 1, 0.5) is None
    for _ in range(4):
        await a.acquire(1, None, nothing)
    assert a._log.leases == 1
    assert await used(raw) == 10  # one round trip for five admissions
    await anyio.sleep(0.52)
    stats = a.stats()
    assert (stats["lease_left"], stats["unused"]) == (0, 5)  # not used after its hold
    await a.acquire(1, None, nothing)
    stats = a.stats()
    assert stats["leases"] == 2
    assert stats["unused"] == 5
    assert await used(raw) == stats["leased"]
    b = limiter(redis_server.url)
    assert b._log is not None
    await b._log.take(100, 1, 0.0)
    assert b._log.leased == 100 - stats["leased"]
    await a.aclose()
    await b.aclose()


async def test_a_process_that_dies_holding_a_lease(
    redis_server: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """A process killed with 50 units leased: the others have the other 50 at once, and
    the dead process's 50 when its units leave the library's window (21 s after they
    were taken), not before and not never."""
    argv = [sys.executable, "-m", "tests.policy.holder", redis_server.url, KEY, "50"]
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == b"held"
            granted_at = time.monotonic()
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
    b, c = limiter(redis_server.url), limiter(redis_server.url)
    assert b._log is not None
    assert c._log is not None
    assert await b._log.take(100, 1, 0.5) is None
    assert b._log.leased == 50
    wait = await c._log.take(1, 1, 0.0)
    assert wait is not None
    elapsed = time.monotonic() - granted_at
    assert 21 - elapsed - 0.1 < wait <= 21  # when the dead process's units leave
    ttl = await raw.pttl(ENTRIES)
    assert 0 < ttl <= 21_000  # and the whole key goes with them
    await b.aclose()
    await c.aclose()


async def test_near_exhaustion_a_lease_takes_only_what_is_left(
    redis_server: RedisServer,
) -> None:
    """With 95 of 100 leased elsewhere, a lease of 10 gets 5, the next admission
    elsewhere waits for the oldest units to leave the window, a cost of 20 waits as
    long, and the limiter then asks for one admission at a time, held for no time."""
    a, b, c = (limiter(redis_server.url) for _ in range(3))
    assert a._log is not None
    assert b._log is not None
    assert c._log is not None
    await a._log.take(95, 1, a._log.hold)
    assert await b._log.take(10, 1, b._log.hold) is None
    assert b._log.leased == 5
    assert b._lease_size(b._log, 1) == (1, 0.0)
    wait = await c._log.take(1, 1, 0.0)
    assert wait is not None
    assert 20 < wait <= 21
    wait_20 = await c._log.take(20, 20, 0.0)
    assert wait_20 is not None
    assert abs(wait_20 - wait) < 0.1  # A's units alone free enough
    assert c._lease_size(c._log, 1) == (1, 0.0)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await c.acquire(1, time.monotonic() + 0.3, nothing)
    assert time.monotonic() - started < 0.6
    for each in (a, b, c):
        await each.aclose()


async def test_a_lease_is_sized_from_the_requests_waiting_when_the_window_has_room(
    redis_server: RedisServer,
) -> None:
    """Five callers waiting and a window with room: the next lease asks for six, held
    for the log's hold; a tenth of the limit at most."""
    a = limiter(redis_server.url)
    assert a._log is not None
    a.waiting = 5
    assert a._lease_size(a._log, 1) == (6, a._log.hold)
    a.waiting = 50
    assert a._lease_size(a._log, 1) == (10, a._log.hold)
    await a.aclose()


async def burst(client: httpx.AsyncClient, n: int) -> None:
    async with anyio.create_task_group() as group:
        for _ in range(n):
            group.start_soon(client.get, "/a")


@pytest.mark.parametrize("on_error", ["closed", "local"])
async def test_redis_stopped_mid_lease(
    stub: Stub, redis_server: RedisServer, on_error: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The units a process holds are admitted after Redis stops (they are counted in it
    already); then requests fail at once ('closed') or go on against the per-process
    limit ('local'), with a warning, and nothing hangs."""
    limit = httpool.RateLimit(
        "6000/minute",
        storage=redis_server.url,
        key="test:midlease",
        on_storage_error=on_error,  # type: ignore[arg-type]
    )
    provider = httpool.Provider("api", base_url=stub.url, rate_limit=limit)
    async with httpool.ClientPool(provider) as p:
        client = p.client("api")
        for _ in range(5):  # a burst sizes the next lease from the rate it saw
            await burst(client, 20)
            left = p.stats()["api"]["rate_limit"]["lease_left"]
            if left >= 5:
                break
        assert left >= 5
        leases = p.stats()["api"]["rate_limit"]["leases"]
        results: list[object] = []
        with caplog.at_level(logging.WARNING, logger="httpool"):
            redis_server.stop()
            started = time.monotonic()
            # past the lease's hold (1 s), or until 3 refusals in a row
            while time.monotonic() - started < 1.5 and results[-3:] != ["LimitTimeout"] * 3:
                try:
                    with anyio.fail_after(5):
                        results.append((await client.get("/a")).status_code)
                except httpool.LimitTimeout:
                    results.append("LimitTimeout")
            assert time.monotonic() - started < 3.0  # nothing hangs
        stats = p.stats()["api"]["rate_limit"]
    assert stats["leases"] == leases  # no lease was taken while Redis was down
    assert results[0] == 200  # the lease held is used
    served = results.index("LimitTimeout") if "LimitTimeout" in results else len(results)
    if on_error == "closed":
        assert 1 <= served <= left  # the lease's units (its hold is 1 s), then refused
        assert results[served:] == ["LimitTimeout"] * 3
        assert stats["state"] == "closed"
    else:
        assert set(results) == {200}
        assert stats["state"] == "fallback"
    assert any("cannot be reached" in r.getMessage() for r in caplog.records)


async def test_the_next_lease_is_taken_before_the_current_one_runs_out(
    redis_server: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """A lease of 8 with 2 left is running low; the lease taken ahead replaces it (all
    of its units to use), and the old one's 2 are counted unused."""
    a = limiter(redis_server.url)
    log = a._log
    assert log is not None
    await log.take(8, 1, 0.5)
    assert not log.lease.running_low()
    for _ in range(5):
        assert log.lease.take(1)
    assert log.lease.running_low()  # 2 of 8 left
    assert await log.take(10, 1, 0.5, ahead=True) is None
    assert (log.lease.left, log.leases) == (10, 2)
    assert await used(raw) == 18
    assert log.unused == 2
    await a.aclose()


async def test_an_admission_that_leaves_a_quarter_takes_the_next_lease(
    redis_server: RedisServer,
) -> None:
    """Through `acquire`: the admission that leaves a quarter of the lease takes the next
    one; the process's rate (here a thousand a second) sizes it."""
    a = limiter(redis_server.url)
    assert a._log is not None
    await a._log.take(8, 1, 0.5)
    a._units = 1000  # as if this process had admitted 1,000 units since it started
    for _ in range(5):
        await a.acquire(1, None, nothing)
    assert a._log.leases == 2
    assert a._log.lease.granted == 10  # a tenth of the limit at most
    await a.aclose()


def _take_five(url: str) -> None:
    """In a forked child: take a lease of 5."""

    async def main() -> None:
        a = limiter(url)
        assert a._log is not None
        assert await a._log.take(5, 1, 0.5) is None

    asyncio.run(main())


async def test_forked_workers_take_their_own_units(
    redis_server: RedisServer, raw: redis.asyncio.Redis
) -> None:
    """Workers forked from one parent (gunicorn's preload) each count what they take:
    two leases of 5 are 10 units in the window."""
    context = multiprocessing.get_context("fork")
    for _ in range(2):
        child = context.Process(target=_take_five, args=(redis_server.url,))
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0
    assert await used(raw) == 10
