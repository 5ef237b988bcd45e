"""Faults at the app level, each against real servers on loopback: nothing leaks or hangs.

The `TestClient` and async tests run on asyncio and on trio (`tests/asgi/conftest.py`);
the ones under uvicorn, and the client kept past its loop, on asyncio.
"""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.
import asyncio
import gc
import threading
import time
from collections.abc import MutableMapping
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.background import BackgroundTask

import httpool

from ..servers import free_port, serve_app
from ..upstream import Upstream, serve_upstream
from .conftest import Backend

Up = Annotated[httpx.AsyncClient, httpool.client("up")]


def active(app: FastAPI) -> int:
    """Requests in flight or streamed responses still open on the app's 'up' client."""
    return int(httpool.get_pool(app).stats()["up"]["requests_in_flight"])


def test_route_that_raises_with_an_open_stream_leaks_nothing(
    upstream: Upstream, anyio_backend: Backend
) -> None:
    """Ten requests whose route opens a stream and raises do not exhaust two connections."""
    provider = httpool.Provider(
        "up",
        base_url=upstream.url,
        limits=httpx.Limits(max_connections=2),
        timeout=httpx.Timeout(5.0, pool=1.0),
    )
    app = FastAPI(lifespan=httpool.lifespan(provider))

    @app.get("/leaky")
    async def leaky(up: Up) -> None:
        await up.send(up.build_request("GET", "/stream?n=3"), stream=True)
        raise RuntimeError("the route failed before closing the stream")

    @app.get("/ok")
    async def ok(up: Up) -> Any:
        return (await up.get("/ping")).json()

    with TestClient(app, raise_server_exceptions=False, backend=anyio_backend) as client:
        for _ in range(10):
            assert client.get("/leaky").status_code == 500
        assert client.get("/ok").status_code == 200
        assert active(app) == 0


def test_route_clean_up_holds_only_the_streams_left_open(
    upstream: Upstream, anyio_backend: Backend
) -> None:
    """Responses the client reads whole never enter the route's clean-up list; streamed
    ones do, a long route's closed ones are pruned from it, and the one left open is
    closed at the route's end."""
    from httpool._clients import open_streams
    from httpool._clients._gate import PRUNE_AT

    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream.url)))
    seen: list[int] = []

    @app.get("/many")
    async def many(up: Up) -> Any:
        streams = open_streams.get()
        assert streams is not None
        for _ in range(50):
            assert (await up.get("/ping")).status_code == 200
        seen.append(len(streams.responses))
        for _ in range(3 * PRUNE_AT):
            async with up.stream("GET", "/ping") as response:
                await response.aread()
        seen.append(len(streams.responses))
        await up.send(up.build_request("GET", "/stream?n=3"), stream=True)
        return {"ok": True}

    with TestClient(app, backend=anyio_backend) as client:
        assert client.get("/many").json() == {"ok": True}
        assert seen[0] == 0
        assert 0 < seen[1] <= PRUNE_AT  # closed streams do not pile up
        assert active(app) == 0  # the stream left open was closed at the route's end


def test_pool_exhaustion_is_a_503_with_retry_after(
    upstream: Upstream, anyio_backend: Backend
) -> None:
    """With every connection busy, a request fails within the pool timeout as a 503."""
    provider = httpool.Provider(
        "up",
        base_url=upstream.url,
        limits=httpx.Limits(max_connections=1),
        timeout=httpx.Timeout(5.0, pool=0.2),
    )
    app = FastAPI(lifespan=httpool.lifespan(provider))
    httpool.install_error_handlers(app)

    @app.get("/hold")
    async def hold(up: Up) -> Any:
        async with up.stream("GET", "/stream?n=2&delay=0.5") as response:
            return [line async for line in response.aiter_lines()]

    @app.get("/quick")
    async def quick(up: Up) -> Any:
        return (await up.get("/ping")).json()

    with TestClient(app, backend=anyio_backend) as client:
        holder = threading.Thread(target=client.get, args=("/hold",))
        holder.start()
        time.sleep(0.2)
        started = time.monotonic()
        response = client.get("/quick")
        waited = time.monotonic() - started
        holder.join()
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["provider"] == "up"
        assert response.json()["error"]["kind"] == "pool_timeout"
        assert waited < 2.0
        assert client.get("/quick").status_code == 200  # serves normally afterwards


def test_upstream_down_then_back(anyio_backend: Backend) -> None:
    """While the upstream is down requests fail fast with a 502; then traffic recovers."""
    port = free_port()
    provider = httpool.Provider(
        "up", base_url=f"http://127.0.0.1:{port}", timeout=httpx.Timeout(5.0, connect=1.0)
    )
    app = FastAPI(lifespan=httpool.lifespan(provider))
    httpool.install_error_handlers(app)

    @app.get("/call")
    async def call(up: Up) -> Any:
        return (await up.get("/ping")).json()

    with TestClient(app, backend=anyio_backend) as client:
        started = time.monotonic()
        down = client.get("/call")
        assert down.status_code == 502
        assert down.json()["error"]["kind"] == "connect_error"
        assert time.monotonic() - started < 1.0
        with serve_upstream(port=port):
            assert client.get("/call").status_code == 200
        assert client.get("/call").status_code in (502, 200)  # gone again: fails cleanly
        with serve_upstream(port=port):
            assert client.get("/call").status_code == 200


def test_read_timeout_is_a_504_without_secrets(upstream: Upstream, anyio_backend: Backend) -> None:
    """A read timeout becomes a 504 whose body names the provider and shows no key."""
    provider = httpool.Provider(
        "up",
        base_url=upstream.url,
        timeout=httpx.Timeout(5.0, read=0.1),
        headers={"Authorization": httpool.Secret("Bearer sk-never-show-123")},
    )
    app = FastAPI(lifespan=httpool.lifespan(provider))
    httpool.install_error_handlers(app)

    @app.get("/slow")
    async def slow(up: Up) -> Any:
        return (await up.get("/slow?delay=1")).json()

    @app.get("/bad-status")
    async def bad_status(up: Up) -> Any:
        return (await up.get("/status?code=500")).raise_for_status()

    with TestClient(app, backend=anyio_backend) as client:
        response = client.get("/slow")
        bad = client.get("/bad-status")
    assert response.status_code == 504
    assert response.json()["error"] == {
        "provider": "up",
        "kind": "timeout",
        "message": "the provider did not answer in time",
    }
    assert "sk-never-show" not in response.text
    assert bad.status_code == 502
    assert bad.json()["error"]["upstream_status"] == 500


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_proxy_stream_ends_quietly_when_the_client_is_gone(anyio_backend: str) -> None:
    """When sending to the client fails (`OSError`, raised inside the relay's task group)
    the relay ends without an error, the upstream response is closed and the background
    task still runs. (asyncio only: httpx leaves the inner generators of a stream left
    mid-way to garbage collection, which trio reports as a warning.)"""
    closed: list[bool] = []
    ran: list[bool] = []

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            yield b"data: 1\n\n"

        async def aclose(self) -> None:
            closed.append(True)

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise OSError("the client went away")

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    upstream = httpx.Response(200, stream=Body())
    background = BackgroundTask(lambda: ran.append(True))
    relay = httpool.UpstreamStreamingResponse(upstream, background=background)
    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    await relay(scope, receive, send)
    assert closed == [True]
    assert ran == [True]


def test_httpx2_errors_get_the_same_answers(upstream: Upstream, anyio_backend: Backend) -> None:
    """Routes on httpx2 clients get the same JSON errors as on httpx clients: an upstream
    that cannot be reached is a 502 naming the provider, a 429 a 503 with Retry-After."""
    httpx2 = pytest.importorskip("httpx2")
    down = httpool.Provider("down", base_url=f"http://127.0.0.1:{free_port()}")
    app = FastAPI(lifespan=httpool.lifespan(down, httpool.Provider("up", base_url=upstream.url)))
    httpool.install_error_handlers(app)

    @app.get("/down")
    async def call_down(request: Request) -> Any:
        client = httpool.get_pool(request).client("down", httpx2.AsyncClient)
        return (await client.get("/x")).json()

    @app.get("/limited")
    async def limited(request: Request) -> Any:
        client = httpool.get_pool(request).client("up", httpx2.AsyncClient)
        return (await client.get("/status?code=429")).raise_for_status()

    with TestClient(app, backend=anyio_backend) as client:
        unreachable = client.get("/down")
        rate_limited = client.get("/limited")
    assert unreachable.status_code == 502
    assert unreachable.json()["error"]["kind"] == "connect_error"
    assert unreachable.json()["error"]["provider"] == "down"
    assert rate_limited.status_code == 503
    assert rate_limited.json()["error"]["kind"] == "upstream_rate_limited"
    assert rate_limited.headers["retry-after"] == "1"


@pytest.mark.parametrize("via", ["dependency", "get_pool"])
def test_client_disconnect_mid_stream_releases_upstream(upstream: Upstream, via: str) -> None:
    """Under uvicorn, a client that goes away mid-stream frees the upstream within a second.

    Through the dependency two mechanisms close the stream (proxy_stream and the
    request-scoped clean-up); through get_pool(request) only proxy_stream does.
    """
    provider = httpool.Provider("up", base_url=upstream.url)
    app = FastAPI(lifespan=httpool.lifespan(provider))

    @app.get("/relay")
    async def relay(request: Request) -> httpool.UpstreamStreamingResponse:
        up = httpool.get_pool(request).client("up")
        upstream_request = up.build_request("GET", "/stream?n=500&delay=0.02")
        return httpool.proxy_stream(await up.send(upstream_request, stream=True))

    @app.get("/relay-dep")
    async def relay_dep(up: Up) -> httpool.UpstreamStreamingResponse:
        upstream_request = up.build_request("GET", "/stream?n=500&delay=0.02")
        return httpool.proxy_stream(await up.send(upstream_request, stream=True))

    path = "/relay-dep" if via == "dependency" else "/relay"

    with serve_app(app) as url:
        with httpx.stream("GET", f"{url}{path}", timeout=5) as response:
            first = next(response.iter_lines())
            assert first.startswith("data:")
            assert upstream.streams_open == 1
        deadline = time.monotonic() + 1.0
        while (upstream.streams_open or active(app)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream.streams_open == 0
        assert active(app) == 0


def test_proxy_stream_relays_everything(upstream: Upstream, anyio_backend: Backend) -> None:
    """proxy_stream passes the whole upstream stream and its content type on."""
    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream.url)))

    @app.get("/relay")
    async def relay(up: Up) -> httpool.UpstreamStreamingResponse:
        return httpool.proxy_stream(await up.send(up.build_request("GET", "/stream"), stream=True))

    with TestClient(app, backend=anyio_backend) as client:
        response = client.get("/relay")
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.text.count("data:") == 5
        assert active(app) == 0


@pytest.mark.anyio
async def test_shutdown_drains_then_refuses(upstream: Upstream) -> None:
    """Closing waits for requests in flight, refuses new ones, and keeps to its deadline."""
    pool = httpool.ClientPool(httpool.Provider("up", base_url=upstream.url), drain_timeout=2.0)
    results: list[int] = []
    async with anyio.create_task_group() as tg:
        await pool.open()
        client = pool.client("up")

        async def slow_call() -> None:
            results.append((await client.get("/slow?delay=0.3")).status_code)

        tg.start_soon(slow_call)
        await anyio.sleep(0.05)
        started = time.monotonic()
        await pool.aclose()
        assert time.monotonic() - started < 2.0
    assert results == [200]
    with pytest.raises(httpool.PoolClosedError, match="closed"):
        pool.client("up")
    with pytest.raises(httpool.PoolClosedError, match="closing"):
        await client.get("/late")


@pytest.mark.anyio
async def test_shutdown_drains_sync_requests_too(upstream: Upstream) -> None:
    """A sync client's request in flight (a `def` route's, in its thread) is counted and
    drained like an async one: shutdown waits for it, and it is answered."""
    pool = httpool.ClientPool(httpool.Provider("up", base_url=upstream.url), drain_timeout=3.0)
    await pool.open()
    client = pool.sync_client("up")
    results: list[int] = []
    async with anyio.create_task_group() as tg:

        def slow_call() -> None:
            results.append(client.get("/slow?delay=0.6").status_code)

        tg.start_soon(anyio.to_thread.run_sync, slow_call)
        await anyio.sleep(0.2)
        assert pool.stats()["up"]["requests_in_flight"] == 1
        started = time.monotonic()
        await pool.aclose()
        took = time.monotonic() - started
    assert results == [200]
    assert 0.2 < took < 2.0, took
    with pytest.raises(RuntimeError, match="closed"):  # the pool's, or the closed client's
        client.get("/late")


@pytest.mark.anyio
async def test_a_redirect_under_way_at_shutdown_is_followed(upstream: Upstream) -> None:
    """While the pool drains, the next hop of a request admitted before (here a redirect
    the upstream answers after 0.3 s) goes on, so the request finishes."""
    provider = httpool.Provider("up", base_url=upstream.url, follow_redirects=True)
    pool = httpool.ClientPool(provider, drain_timeout=3.0)
    await pool.open()
    client = pool.client("up")
    results: list[int] = []
    async with anyio.create_task_group() as tg:

        async def call() -> None:
            results.append(
                (await client.get(f"/redirect-slow?to={upstream.url}/landed")).status_code
            )

        tg.start_soon(call)
        await anyio.sleep(0.1)
        await pool.aclose()
    assert results == [200]
    assert [r["path"] for r in upstream.requests] == ["/redirect-slow", "/landed"]


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_shutdown_keeps_its_deadline(upstream: Upstream) -> None:
    """A request that outlives the drain deadline does not hold shutdown up.

    (A close that outlives its deadline is abandoned, by design: on trio, where the
    provider runs on httpx's own transport, the stuck request's socket can be left to
    the garbage collector. It is collected here, so its warning stays in this test.)"""
    pool = httpool.ClientPool(
        httpool.Provider("up", base_url=upstream.url), drain_timeout=0.3, close_timeout=0.5
    )
    await pool.open()
    errors: list[BaseException] = []
    async with anyio.create_task_group() as tg:

        async def stuck_call() -> None:
            try:
                await pool.client("up").get("/slow?delay=5")
            except Exception as exc:
                errors.append(exc)

        tg.start_soon(stuck_call)
        await anyio.sleep(0.05)
        started = time.monotonic()
        await pool.aclose()
        took = time.monotonic() - started
        tg.cancel_scope.cancel()
    gc.collect()
    assert took < 1.0, took


@pytest.mark.anyio
async def test_credentials_stay_with_their_origin(upstream: Upstream) -> None:
    """An absolute URL to another origin is refused unless the origin is allowed."""
    with serve_upstream() as other:
        provider = httpool.Provider(
            "up", base_url=upstream.url, headers={"X-Api-Key": httpool.Secret("key-123456")}
        )
        allowed = httpool.Provider(
            "up2", base_url=upstream.url, headers={"X-Api-Key": "k"}, allowed_origins=[other.url]
        )
        async with httpool.ClientPool(provider, allowed) as pool:
            with pytest.raises(httpool.OriginNotAllowedError, match=other.url.replace(".", "[.]")):
                await pool.client("up").get(f"{other.url}/steal")
            assert other.requests == []
            assert (await pool.client("up2").get(f"{other.url}/fine")).status_code == 200
            assert (await pool.client("up").get(f"{upstream.url}/same")).status_code == 200


@pytest.mark.anyio
async def test_cross_origin_redirect_drops_provider_headers(upstream: Upstream) -> None:
    """A redirect to another origin carries none of the provider's headers or auth."""
    with serve_upstream() as other:
        provider = httpool.Provider(
            "up",
            base_url=upstream.url,
            follow_redirects=True,
            headers={
                "X-Api-Key": httpool.Secret("key-123456"),
                "api-key": "k2",
                "Authorization": "Bearer t",
            },
        )
        async with httpool.ClientPool(provider) as pool:
            response = await pool.client("up").get(f"/redirect?to={other.url}/landed")
        assert response.status_code == 200
        received = other.requests[0]["headers"]
        assert {"x-api-key", "api-key", "authorization"}.isdisjoint(received)
        assert upstream.requests[0]["headers"]["x-api-key"] == "key-123456"


def test_client_from_another_event_loop_fails_clearly(upstream: Upstream) -> None:
    """A client kept past its loop fails at once with a message naming the cause."""
    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream.url)))
    errors: list[BaseException] = []
    with TestClient(app) as client:
        kept = httpool.get_pool(client).client("up")

        def other_loop() -> None:
            try:
                asyncio.run(kept.get("/x"))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_loop)
        thread.start()
        thread.join()
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "another event loop" in str(errors[0])
    assert "Event loop is closed" not in str(errors[0])
    with pytest.raises(httpool.PoolClosedError, match="'up'"):
        asyncio.run(kept.get("/x"))
