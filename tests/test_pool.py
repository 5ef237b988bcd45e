"""`ClientPool` on its own: lifecycle, lazy clients, concurrency and closing."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import anyio
import httpx
import pytest

import httpool

from .upstream import Upstream

pytestmark = pytest.mark.anyio


class SlowCloseTransport(httpx.MockTransport):
    """A transport whose close takes a while, or fails (no network is the point here)."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        super().__init__(lambda request: httpx.Response(200))
        self.delay, self.error, self.closed = delay, error, False

    async def aclose(self) -> None:
        await anyio.sleep(self.delay)
        self.closed = True
        if self.error is not None:
            raise self.error


def mock(transport: httpx.AsyncBaseTransport) -> Callable[[], httpx.AsyncBaseTransport]:
    """A factory handing out the given transport, as `Provider(transport=...)` takes."""
    return lambda: transport


async def test_lifecycle_states() -> None:
    """A pool goes unopened → open → closed, and refuses use when not open."""
    pool = httpool.ClientPool(httpool.Provider("a", base_url="http://127.0.0.1:9"))
    assert pool.state is httpool.PoolState.UNOPENED
    with pytest.raises(httpool.PoolClosedError, match="'a'.*unopened"):
        pool.client("a")
    async with pool:
        assert pool.state is httpool.PoolState.OPEN  # type: ignore[comparison-overlap]  # mypy keeps the narrowing from before the `async with`
        assert isinstance(pool.client("a"), httpx.AsyncClient)
    assert pool.state is httpool.PoolState.CLOSED
    with pytest.raises(httpool.PoolClosedError, match="'a'.*closed"):
        pool.client("a")
    with pytest.raises(httpool.PoolClosedError):
        await pool.get_client("a")
    await pool.aclose()  # twice is fine


async def test_reopen_makes_new_clients() -> None:
    """Opening again after close makes fresh clients (a second app run)."""
    pool = httpool.ClientPool(httpool.Provider("a", base_url="http://127.0.0.1:9"))
    async with pool:
        first = pool.client("a")
    async with pool:
        second = pool.client("a")
        assert second is not first
        assert not second.is_closed
    assert first.is_closed


async def test_unknown_provider_lists_registered() -> None:
    """Asking for an unknown name says which providers exist."""
    async with httpool.ClientPool(
        httpool.Provider("openai", base_url="http://127.0.0.1:9"),
        httpool.Provider("voyage", base_url="http://127.0.0.1:9"),
    ) as pool:
        with pytest.raises(
            httpool.UnknownProviderError, match="'opnai'; registered: openai, voyage"
        ):
            pool.client("opnai")


def test_duplicate_names_are_refused() -> None:
    """Two providers with one name are a configuration error."""
    p = httpool.Provider("a", base_url="http://x")
    with pytest.raises(httpool.ConfigError, match="'a' is registered twice"):
        httpool.ClientPool(p, p)


async def test_pool_talks_to_real_upstream(upstream: Upstream) -> None:
    """A registered client sends its base_url, headers and Secret to the upstream."""
    provider = httpool.Provider(
        "up", base_url=upstream.url, headers={"X-Api-Key": httpool.Secret("k-123456")}
    )
    async with httpool.ClientPool(provider) as pool:
        response = await pool.client("up").post("/v1/embeddings", json={"input": ["a"]})
    assert response.status_code == 200
    body = response.json()
    assert body["path"] == "/v1/embeddings"
    assert body["headers"]["x-api-key"] == "k-123456"
    assert json.loads(body["body"]) == {"input": ["a"]}


async def test_concurrent_get_client_makes_one_client() -> None:
    """200 concurrent get_client calls for a new name all get the same single client."""
    got: list[httpx.AsyncClient] = []
    async with httpool.ClientPool() as pool:

        async def get() -> None:
            got.append(await pool.get_client("qdrant", read_timeout=90.0))

        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(get)
        assert len(got) == 200
        assert len({id(c) for c in got}) == 1
        assert pool.has_client("qdrant")
        assert got[0].timeout.read == 90.0


async def test_get_client_sync_from_threads_makes_one_client() -> None:
    """get_client_sync from 50 plain threads at once makes exactly one client."""
    got: list[httpx.AsyncClient] = []
    async with httpool.ClientPool() as pool:
        barrier = threading.Barrier(50)

        def worker() -> None:
            barrier.wait()
            got.append(pool.get_client_sync("cohere", max_connections=5))

        threads = [threading.Thread(target=worker) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(c) for c in got}) == 1


async def test_other_overrides_warn(caplog: pytest.LogCaptureFixture) -> None:
    """Asking again with other overrides returns the cached client and logs a warning."""
    async with httpool.ClientPool() as pool:
        first = await pool.get_client("voyage", read_timeout=90.0)
        with caplog.at_level(logging.WARNING, logger="httpool"):
            again = await pool.get_client("voyage", read_timeout=5.0)
            same = await pool.get_client("voyage", read_timeout=90.0)
        assert again is first
        assert same is first
    warned = [
        r for r in caplog.records if "overrides read_timeout were not applied" in r.getMessage()
    ]
    assert len(warned) == 1


async def test_close_client() -> None:
    """close_client closes one client, returns False when there was none."""
    async with httpool.ClientPool(httpool.Provider("a", base_url="http://127.0.0.1:9")) as pool:
        client = pool.client("a")
        assert await pool.close_client("a") is True
        assert client.is_closed
        assert not pool.has_client("a")
        assert await pool.close_client("a") is False
        assert await pool.get_client("a") is not client


async def test_close_is_concurrent() -> None:
    """Ten providers whose close takes 0.3 s each close together in well under 1 s."""
    transports = [SlowCloseTransport(delay=0.3) for _ in range(10)]
    providers = [
        httpool.Provider(f"p{i}", base_url="http://127.0.0.1:9", transport=mock(t))
        for i, t in enumerate(transports)
    ]
    pool = httpool.ClientPool(*providers)
    await pool.open()
    started = time.monotonic()
    await pool.close_all()
    elapsed = time.monotonic() - started
    assert all(t.closed for t in transports)
    assert elapsed < 0.8, elapsed


async def test_hung_close_is_abandoned(caplog: pytest.LogCaptureFixture) -> None:
    """A close that hangs past close_timeout is abandoned with a warning; shutdown ends."""
    hung = SlowCloseTransport(delay=60)
    pool = httpool.ClientPool(
        httpool.Provider("stuck", base_url="http://127.0.0.1:9", transport=mock(hung)),
        close_timeout=0.2,
    )
    await pool.open()
    with caplog.at_level(logging.WARNING, logger="httpool"), anyio.fail_after(2):
        await pool.aclose()
    assert pool.state is httpool.PoolState.CLOSED
    assert any(getattr(r, "provider", None) == "stuck" for r in caplog.records)


async def test_failing_close_is_logged_and_others_close(caplog: pytest.LogCaptureFixture) -> None:
    """A network error on close is logged with the provider; the other clients still close."""
    bad = SlowCloseTransport(error=httpx.RemoteProtocolError("peer went away"))
    good = SlowCloseTransport()
    pool = httpool.ClientPool(
        httpool.Provider("bad", base_url="http://127.0.0.1:9", transport=mock(bad)),
        httpool.Provider("good", base_url="http://127.0.0.1:9", transport=mock(good)),
    )
    await pool.open()
    with caplog.at_level(logging.WARNING, logger="httpool"):
        await pool.aclose()
    assert good.closed
    assert bad.closed
    record = next(r for r in caplog.records if "closing httpool client" in r.getMessage())
    assert record.provider == "bad"  # type: ignore[attr-defined]


async def test_unexpected_close_errors_are_raised_together() -> None:
    """Errors that are not network errors are all raised, after every client was closed."""
    one = SlowCloseTransport(error=KeyError("one"))
    two = SlowCloseTransport(error=ZeroDivisionError("two"))
    fine = SlowCloseTransport()
    pool = httpool.ClientPool(
        httpool.Provider("one", base_url="http://127.0.0.1:9", transport=mock(one)),
        httpool.Provider("two", base_url="http://127.0.0.1:9", transport=mock(two)),
        httpool.Provider("fine", base_url="http://127.0.0.1:9", transport=mock(fine)),
    )
    await pool.open()
    with pytest.raises(ExceptionGroup) as info:
        await pool.aclose()
    assert {type(e) for e in info.value.exceptions} == {KeyError, ZeroDivisionError}
    assert fine.closed
    assert pool.state is httpool.PoolState.CLOSED
    notes = [n for e in info.value.exceptions for n in getattr(e, "__notes__", [])]
    assert any("'one'" in n for n in notes)
    assert any("'two'" in n for n in notes)


async def test_sync_client_is_made_once(upstream: Upstream) -> None:
    """sync_client gives one thread-safe httpx.Client per provider that works from threads."""
    async with httpool.ClientPool(httpool.Provider("up", base_url=upstream.url)) as pool:
        clients: list[httpx.Client] = []
        statuses: list[int] = []

        def worker() -> None:
            c = pool.sync_client("up")
            clients.append(c)
            statuses.append(c.get("/ping").status_code)

        await anyio.to_thread.run_sync(lambda: [worker() for _ in range(5)])  # type: ignore[func-returns-value]  # run for effect
        assert len({id(c) for c in clients}) == 1
        assert statuses == [200] * 5
        with pytest.raises(httpool.UnknownProviderError):
            pool.sync_client("nope")
    assert clients[0].is_closed


async def test_stats_are_json_ready_and_secret_free(upstream: Upstream) -> None:
    """stats() is a JSON-ready dict per provider that never shows a Secret."""
    key = "sk-stats-secret-987654"
    provider = httpool.Provider(
        "up", base_url=upstream.url, headers={"Authorization": httpool.Secret(f"Bearer {key}")}
    )
    async with httpool.ClientPool(provider) as pool:
        await pool.client("up").get("/ping")
        stats = pool.stats()
    text = json.dumps(stats)
    assert key not in text
    assert stats["up"]["base_url"] == upstream.url
    assert stats["up"]["max_connections"] == 100


async def test_warmup_opens_connections_before_first_request(upstream: Upstream) -> None:
    """warmup=3 leaves three connections open at the server before any request is made."""
    provider = httpool.Provider("up", base_url=upstream.url, warmup=3, http2=False)
    async with httpool.ClientPool(provider) as pool:
        assert upstream.connections == 3
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(pool.client("up").get, "/x")
        assert upstream.connections == 3


async def test_failed_warmup_warns_and_starts(caplog: pytest.LogCaptureFixture) -> None:
    """A warm-up that cannot connect logs a warning naming the provider; the pool opens."""
    provider = httpool.Provider("down", base_url="http://127.0.0.1:9", warmup=2)
    with caplog.at_level(logging.WARNING, logger="httpool"):
        async with httpool.ClientPool(provider) as pool:
            assert pool.state is httpool.PoolState.OPEN
    assert any(getattr(r, "provider", None) == "down" for r in caplog.records)


async def test_failed_warmup_of_required_provider_stops_startup() -> None:
    """A required provider whose warm-up fails stops startup, and the pool is closed."""
    pool = httpool.ClientPool(
        httpool.Provider("down", base_url="http://127.0.0.1:9", warmup=1, required=True)
    )
    with pytest.raises(httpx.ConnectError) as info:
        await pool.open()
    assert "'down' is required=True" in "".join(info.value.__notes__)
    assert pool.state is httpool.PoolState.CLOSED


async def test_requests_log_at_debug_only(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A request logs one DEBUG record with structured fields and nothing at INFO or above."""
    provider = httpool.Provider("up", base_url=upstream.url)
    async with httpool.ClientPool(provider) as pool:
        with caplog.at_level(logging.INFO, logger="httpool"):
            await pool.client("up").get("/quiet?api_key=k-secret-123")
        assert not [r for r in caplog.records if r.name.startswith("httpool")]
        with caplog.at_level(logging.DEBUG, logger="httpool"):
            await pool.client("up").get("/loud?api_key=k-secret-123")
    records = [r for r in caplog.records if r.name == "httpool" and "/loud" in r.getMessage()]
    assert len(records) == 1
    record = records[0]
    assert record.provider == "up"  # type: ignore[attr-defined]
    assert record.status == 200  # type: ignore[attr-defined]
    assert record.origin == upstream.url  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert "k-secret-123" not in record.getMessage()


async def test_closed_streamed_response_is_not_counted_in_flight() -> None:
    """A streamed response that a mock hands back already closed leaves nothing in flight."""
    mock_transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"done"))
    provider = httpool.Provider("m", base_url="http://mock", transport=mock_transport)
    async with httpool.ClientPool(provider, drain_timeout=3) as pool:
        client = pool.client("m")
        response = await client.send(client.build_request("GET", "/"), stream=True)
        await response.aread()
        await response.aclose()
        assert pool.stats()["m"]["requests_in_flight"] == 0
        started = time.monotonic()
    assert time.monotonic() - started < 1.0


async def test_failed_opening_is_rolled_back_and_can_open_again() -> None:
    """A client that cannot be made leaves the pool as it was (not OPEN), closes the clients
    already made, and the pool opens once the cause is fixed."""
    made = SlowCloseTransport()
    broken = {"now": True}

    def factory() -> httpx.AsyncBaseTransport:
        if broken["now"]:
            raise RuntimeError("the transport cannot be made yet")
        return httpx.MockTransport(lambda request: httpx.Response(204))

    pool = httpool.ClientPool(
        httpool.Provider("first", base_url="http://127.0.0.1:9", transport=mock(made)),
        httpool.Provider("second", base_url="http://127.0.0.1:9", transport=factory),
    )
    with pytest.raises(RuntimeError, match="cannot be made yet"):
        await pool.open()
    assert pool.state is httpool.PoolState.UNOPENED
    assert made.closed  # the client made before the failure was closed
    assert not pool.has_client("first")
    with pytest.raises(httpool.PoolClosedError):
        pool.client("first")
    broken["now"] = False
    async with pool:
        assert pool.state is httpool.PoolState.OPEN  # type: ignore[comparison-overlap]  # as above
        assert (await pool.client("second").get("/")).status_code == 204
    assert pool.state is httpool.PoolState.CLOSED
    broken["now"] = True
    with pytest.raises(RuntimeError):
        await pool.open()
    assert pool.state is httpool.PoolState.CLOSED  # as it was before this opening


@pytest.mark.parametrize(
    ("field", "value"), [("drain_timeout", -1.0), ("close_timeout", float("nan"))]
)
def test_shutdown_deadlines_must_be_seconds(field: str, value: float) -> None:
    """A negative or NaN deadline is refused, naming the argument."""
    with pytest.raises(httpool.ConfigError, match=rf"ClientPool\({field}=.*\): must be a number"):
        httpool.ClientPool(httpool.Provider("up"), **{field: value})


async def test_opening_an_open_pool_is_refused() -> None:
    """`open()` on an open pool says it is already open; closing then works as usual."""
    pool = httpool.ClientPool(httpool.Provider("up", base_url="http://127.0.0.1:9"))
    async with pool:
        with pytest.raises(RuntimeError, match="already open"):
            await pool.open()
    assert pool.state is httpool.PoolState.CLOSED


async def test_override_is_refused_while_open_and_undone_after() -> None:
    """`override()` changes a provider until its block ends, refuses unknown names, and is
    refused while the pool runs; the sync client is refused once the pool closed."""
    pool = httpool.ClientPool(httpool.Provider("up", base_url="http://127.0.0.1:9"))
    with pool.override("up", base_url="http://127.0.0.1:8") as replaced:
        assert replaced.base_url == "http://127.0.0.1:8"
        assert pool.providers["up"] is replaced
    assert pool.providers["up"].base_url == "http://127.0.0.1:9"
    with pytest.raises(httpool.UnknownProviderError), pool.override("nope", timeout=1.0):
        pass
    async with pool:
        with (
            pytest.raises(RuntimeError, match="override providers before the app starts"),
            pool.override("up", timeout=1.0),
        ):
            pass
        assert pool.get_client_sync("up") is pool.client("up")
    with pytest.raises(httpool.PoolClosedError, match="'up'"):
        pool.sync_client("up")
