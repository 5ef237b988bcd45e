"""`max_concurrency`: requests in flight per provider, first come first served."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

import httpool

from .stub import Stub

pytestmark = pytest.mark.anyio


def provider(stub: Stub, n: int, pool_timeout: float = 5.0) -> httpool.Provider:
    return httpool.Provider(
        "api",
        base_url=stub.url,
        max_concurrency=n,
        timeout=httpx.Timeout(5.0, pool=pool_timeout),
    )


async def test_at_most_n_requests_are_in_flight_served_in_order(stub: Stub) -> None:
    """Eight callers, two slots: the stub never sees more than two, in call order."""
    stub.delay = 0.05
    async with httpool.ClientPool(provider(stub, 2)) as p:
        client = p.client("api")

        async def call(i: int) -> None:
            await client.get("/a", headers={"x-req-id": str(i)})

        async with anyio.create_task_group() as group:
            for i in range(8):
                group.start_soon(call, i)
                await anyio.sleep(0.002)  # a known call order
        stats = p.stats()["api"]
    assert stub.most_active == 2
    order = [int(headers["x-req-id"]) for _, _, _, headers in stub.arrivals]
    assert order[2:] == sorted(order[2:])
    assert stats["concurrency"] == {"limit": 2, "in_flight": 0, "waiting": 0}
    assert stats["limit_wait_seconds"]["concurrency"] > 0.1


async def test_a_streamed_response_holds_its_slot_until_closed(stub: Stub) -> None:
    """An open stream keeps the one slot: the next request fails in its pool timeout,
    naming the provider; once the stream is closed, requests go through again."""
    async with httpool.ClientPool(provider(stub, 1, pool_timeout=0.3)) as p:
        client = p.client("api")
        request = client.build_request("GET", "/stream")
        response = await client.send(request, stream=True)
        started = time.monotonic()
        with pytest.raises(httpx.PoolTimeout, match="provider 'api'.*max_concurrency") as info:
            await client.get("/a")
        assert 0.3 <= time.monotonic() - started < 2.0
        assert isinstance(info.value, httpool.LimitTimeout)
        assert info.value.limit == "max_concurrency"
        assert p.stats()["api"]["concurrency"]["in_flight"] == 1
        await response.aclose()
        assert (await client.get("/a")).status_code == 200
        assert p.stats()["api"]["concurrency"]["in_flight"] == 0


async def test_a_cancelled_waiter_does_not_take_a_slot(stub: Stub) -> None:
    """A caller cancelled while waiting leaves the slot for the next one."""
    stub.delay = 0.2
    async with httpool.ClientPool(provider(stub, 1)) as p:
        client = p.client("api")
        async with anyio.create_task_group() as group:
            group.start_soon(client.get, "/first")
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.05):
                await client.get("/cancelled")
            assert (await client.get("/third")).status_code == 200
        assert p.stats()["api"]["concurrency"]["in_flight"] == 0
    assert [path for _, _, path, _ in stub.arrivals] == ["/first", "/third"]


def test_max_concurrency_must_be_a_positive_whole_number() -> None:
    """0 is refused with the field's name."""
    with pytest.raises(httpool.ConfigError, match=r"max_concurrency"):
        httpool.Provider("api", max_concurrency=0)


async def test_an_answer_read_by_the_transport_frees_its_slot_at_once() -> None:
    """A mock transport's answers come back read and closed: they hold no slot."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"{}"))
    provider = httpool.Provider(
        "api",
        base_url="http://api.test",
        transport=transport,
        max_concurrency=1,
        timeout=httpx.Timeout(5.0, pool=0.2),
    )
    async with httpool.ClientPool(provider) as p:
        for _ in range(3):
            assert (await p.client("api").get("/a")).status_code == 200
        assert p.stats()["api"]["concurrency"]["in_flight"] == 0
