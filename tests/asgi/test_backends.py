"""The ASGI layer driven the async way, on asyncio and on trio.

`asgi_lifespan.LifespanManager` runs the lifespan and `httpx.ASGITransport` sends the
requests, in the test's own event loop: asyncio, or trio, where the pool gives its
providers httpx's own transport. Each test shows one behaviour is the same on both:
the lifespan and `get_pool`, the dependencies, the clean-up of streams a route left
open, the drain at shutdown, and the error handlers.
"""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request
from starlette.background import BackgroundTask

import httpool
from httpool._clients import _httpx as _clients

from ..servers import free_port
from ..upstream import Upstream

pytestmark = pytest.mark.anyio

Up = Annotated[httpx.AsyncClient, httpool.client("up")]
NOTE = "runs under trio: it uses httpx's own transport"
TRANSPORT = {"asyncio": "PoolTransport", "trio": "AsyncHTTPTransport"}


@pytest.fixture(autouse=True)
def _say_again() -> Iterator[None]:
    """Each test sees the once-per-provider trio note afresh."""
    _clients._said_trio.clear()
    yield
    _clients._said_trio.clear()


def make_app(base_url: str, **options: Any) -> FastAPI:
    """An app with provider 'up' at `base_url` and the error handlers installed."""
    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=base_url, **options)))
    httpool.install_error_handlers(app)

    @app.get("/call")
    async def call(up: Up, path: str = "/ping") -> Any:
        response = await up.get(path)
        response.raise_for_status()
        return response.json()

    @app.get("/left-open")
    async def left_open(up: Up) -> Any:
        response = await up.send(up.build_request("GET", "/stream?n=50&delay=0.02"), stream=True)
        return {"status": response.status_code}  # never closed by the route

    @app.get("/relay")
    async def relay(up: Up) -> httpool.UpstreamStreamingResponse:
        return httpool.proxy_stream(await up.send(up.build_request("GET", "/stream"), stream=True))

    @app.get("/stats")
    async def stats(request: Request) -> Any:
        return httpool.get_pool(request).stats()["up"]

    return app


async def in_flight(app: FastAPI) -> int:
    """Requests in flight on the 'up' provider, after the streams closed (at most 2 s)."""
    with anyio.move_on_after(2):
        while httpool.get_pool(app).stats()["up"]["requests_in_flight"]:
            await anyio.sleep(0.01)
    return int(httpool.get_pool(app).stats()["up"]["requests_in_flight"])


async def lifespan_client(app: FastAPI) -> AsyncIterator[tuple[LifespanManager, httpx.AsyncClient]]:
    """The lifespan running and a client on `manager.app`."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield manager, client


async def test_lifespan_dependency_and_get_pool(
    upstream: Upstream, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two runs of the app: routes get the provider's client, requests share one
    connection, `get_pool(manager.app)` is the running pool; under trio the provider is
    on httpx's own transport, which is logged once for both runs."""
    app = make_app(upstream.url)
    with caplog.at_level(logging.INFO, logger="httpool"):
        for run in range(2):
            async for manager, client in lifespan_client(app):
                answers = [(await client.get("/call?path=/v1/x")).json() for _ in range(10)]
                assert {a["path"] for a in answers} == {"/v1/x"}
                pool = httpool.get_pool(manager.app)
                assert pool is httpool.get_pool(app)
                stats = (await client.get("/stats")).json()
                assert stats["transport"] == TRANSPORT[anyio_backend]
                assert stats["requests_in_flight"] == 0
            assert pool.state is httpool.PoolState.CLOSED
            assert upstream.connections == run + 1  # one connection per run
    notes = [r for r in caplog.records if NOTE in r.getMessage()]
    assert len(notes) == (1 if anyio_backend == "trio" else 0)


async def test_a_stream_the_route_left_open_is_closed_after_the_response(
    upstream: Upstream,
) -> None:
    """The dependency closes the streamed response the route did not: nothing stays in
    flight, and the upstream sees its stream end long before its 50 chunks are sent."""
    app = make_app(upstream.url, limits=httpx.Limits(max_connections=1))
    async for _, client in lifespan_client(app):
        for _ in range(3):  # one connection: a leaked stream would block the next one
            assert (await client.get("/left-open")).json() == {"status": 200}
            assert await in_flight(app) == 0
        with anyio.move_on_after(2):
            while upstream.streams_open:
                await anyio.sleep(0.01)
        assert upstream.streams_open == 0


async def test_proxy_stream_relays_and_closes(upstream: Upstream) -> None:
    """proxy_stream passes every event and the content type on, then closes the upstream."""
    app = make_app(upstream.url)
    async for _, client in lifespan_client(app):
        response = await client.get("/relay")
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.text.count("data:") == 5
        assert await in_flight(app) == 0


async def test_shutdown_drains_in_flight_and_refuses_new_requests(upstream: Upstream) -> None:
    """At shutdown a request in flight through a route finishes; one that comes while the
    pool is closing gets the handlers' 503 `shutting_down`; shutdown keeps its deadline."""
    app = make_app(upstream.url)
    app.router.lifespan_context = httpool.lifespan(
        httpool.Provider("up", base_url=upstream.url), drain_timeout=3.0
    )
    statuses: dict[str, Any] = {}
    manager = LifespanManager(app)
    transport = httpx.ASGITransport(app=manager.app)
    client = httpx.AsyncClient(transport=transport, base_url="http://app")

    async def slow() -> None:
        statuses["slow"] = (await client.get("/call?path=/slow%3Fd%3D0.4")).status_code

    async def late(pool: httpool.ClientPool) -> None:
        with anyio.fail_after(3):
            while pool.state is not httpool.PoolState.CLOSING:
                await anyio.sleep(0.005)
        response = await client.get("/call")
        statuses["late"] = response.status_code, response.json()["error"]["kind"]

    async with client, anyio.create_task_group() as tg:
        async with manager:
            pool = httpool.get_pool(manager.app)
            tg.start_soon(slow)
            with anyio.fail_after(3):
                while not any(r["path"] == "/slow" for r in upstream.requests):
                    await anyio.sleep(0.005)
            tg.start_soon(late, pool)
            started = anyio.current_time()
        took = anyio.current_time() - started
    assert statuses == {"slow": 200, "late": (503, "shutting_down")}
    assert pool.state is httpool.PoolState.CLOSED
    assert took < 3.0


async def test_error_handlers_answer_each_failure(upstream: Upstream) -> None:
    """Connect error 502, read timeout 504, upstream 500 as 502, an upstream 429 as a 503
    with Retry-After: the same JSON errors on both backends, naming the provider."""
    down = make_app(f"http://127.0.0.1:{free_port()}")
    async for _, client in lifespan_client(down):
        response = await client.get("/call")
        assert (response.status_code, response.json()["error"]["kind"]) == (502, "connect_error")
        assert response.json()["error"]["provider"] == "up"
    app = make_app(upstream.url, timeout=httpx.Timeout(5.0, read=0.1))
    async for _, client in lifespan_client(app):
        slow = await client.get("/call?path=/slow%3Fd%3D1")
        failed = await client.get("/call?path=/status%3Fcode%3D500")
        limited = await client.get("/call?path=/status%3Fcode%3D429")
    assert (slow.status_code, slow.json()["error"]["kind"]) == (504, "timeout")
    assert (failed.status_code, failed.json()["error"]["upstream_status"]) == (502, 500)
    assert (limited.status_code, limited.json()["error"]["kind"]) == (503, "upstream_rate_limited")
    assert limited.headers["retry-after"] == "1"


async def test_a_relayed_stream_runs_its_background_task_after_closing(
    upstream: Upstream,
) -> None:
    """An `UpstreamStreamingResponse` with a background task runs it once the upstream
    response is relayed and closed."""
    app = make_app(upstream.url)
    done: list[int] = []

    @app.get("/relay-then")
    async def relay_then(up: Up) -> httpool.UpstreamStreamingResponse:
        streamed = await up.send(up.build_request("GET", "/stream?n=3"), stream=True)

        def after() -> None:
            done.append(int(httpool.get_pool(app).stats()["up"]["requests_in_flight"]))

        return httpool.UpstreamStreamingResponse(streamed, background=BackgroundTask(after))

    async for _, client in lifespan_client(app):
        response = await client.get("/relay-then")
        assert response.text.count("data:") == 3
    assert done == [0]  # ran after the upstream response was closed


async def test_a_lifespan_for_an_app_without_state_yields_the_pool(upstream: Upstream) -> None:
    """Run for an ASGI app with no `state` (nor routes), the lifespan opens the pool, yields
    it as the lifespan state and closes it; it reads as the call that made it."""
    lifespan = httpool.lifespan(httpool.Provider("up", base_url=upstream.url))
    assert repr(lifespan) == "httpool.lifespan(<httpool.ClientPool unopened providers=['up']>)"
    async with lifespan(object()) as state:
        pool = state["httpool"]
        assert (await pool.client("up").get("/bare")).json()["path"] == "/bare"
    assert pool.state is httpool.PoolState.CLOSED
