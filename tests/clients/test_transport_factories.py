"""A provider's transport given as a factory: called when the pool opens, and what it
makes is checked."""

from __future__ import annotations

import httpx
import pytest

import httpool

pytestmark = pytest.mark.anyio


async def test_a_factory_makes_each_runs_transport() -> None:
    """The factory is called at each opening, and the client sends through what it made."""
    made: list[httpx.MockTransport] = []

    def factory() -> httpx.MockTransport:
        made.append(httpx.MockTransport(lambda request: httpx.Response(201)))
        return made[-1]

    pool = httpool.ClientPool(
        httpool.Provider("up", base_url="http://127.0.0.1:9", transport=factory)
    )
    for _ in range(2):
        async with pool:
            assert (await pool.client("up").get("/")).status_code == 201
    assert len(made) == 2


async def test_a_factory_that_makes_no_transport_is_named() -> None:
    """A factory returning something else fails the opening, naming the provider and
    what it made; the pool is closed again."""
    provider = httpool.Provider("up", base_url="http://127.0.0.1:9", transport=lambda: "nope")  # type: ignore[arg-type,return-value]
    pool = httpool.ClientPool(provider)
    with pytest.raises(TypeError, match=r"Provider\('up'\).transport made 'nope', not an httpx"):
        await pool.open()
    assert pool.state is not httpool.PoolState.OPEN
