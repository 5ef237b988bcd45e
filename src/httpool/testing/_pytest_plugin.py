"""httpool's pytest plugin: the `httpool_mock` and `httpool_assert_no_leaks` fixtures.

Registered through the `pytest11` entry point, so installing httpool is enough.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .._pool import ClientPool, PoolState
from . import TransportOverrides, assert_no_leaks, find_leaks

__all__ = ["httpool_assert_no_leaks", "httpool_mock"]


@pytest.fixture
def httpool_mock() -> Iterator[TransportOverrides]:
    """Fake providers' upstreams for one test: `httpool_mock.add(app, "openai", handler)`.

    Add fakes before the app starts (before `with TestClient(app)`); they are undone
    when the test ends.
    """
    with TransportOverrides() as overrides:
        yield overrides


@pytest.fixture
def httpool_assert_no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[object], None]]:
    """Fail the test when an httpool pool closes with a response or connection still out.

    Every pool that closes during the test is checked as its closing starts (when a
    `with TestClient(app)` block ends, for example); the test fails at teardown, naming
    the providers. The fixture's value is `httpool.testing.assert_no_leaks`, to check a
    running app on the spot: `httpool_assert_no_leaks(client)`.
    """
    found: list[str] = []
    aclose = ClientPool.aclose

    async def checked_aclose(pool: ClientPool) -> None:
        if pool.state is PoolState.OPEN:
            for name, leaks in find_leaks(pool).items():
                found.append(f"{name!r}: {'; '.join(leaks)}")
        await aclose(pool)

    monkeypatch.setattr(ClientPool, "aclose", checked_aclose)
    yield assert_no_leaks
    if found:
        pytest.fail("an httpool pool closed with leaks:\n  " + "\n  ".join(found), pytrace=False)
