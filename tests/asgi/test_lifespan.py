"""httpool inside FastAPI and Starlette apps: lifespan, dependencies, TestClient runs.

Every test runs on asyncio and on trio (`tests/asgi/conftest.py`): `TestClient` takes the
backend, the async tests run on it through anyio's pytest plugin.
"""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import httpool

from ..upstream import Upstream
from .conftest import Backend

Up = Annotated[httpx.AsyncClient, httpool.client("up")]
SyncUp = Annotated[httpx.Client, httpool.sync_client("up")]


def make_app(upstream: Upstream, **lifespan_kwargs: Any) -> FastAPI:
    """A small app with one provider 'up' pointing at the test upstream."""
    provider = httpool.Provider(
        "up", base_url=upstream.url, headers={"Authorization": httpool.Secret("Bearer sk-abcdef")}
    )
    app = FastAPI(lifespan=httpool.lifespan(provider, **lifespan_kwargs))

    @app.get("/proxy")
    async def proxy(up: Up) -> Any:
        return (await up.get("/v1/ping")).json()

    @app.get("/sync-proxy")
    def sync_proxy(up: SyncUp) -> Any:
        return up.get("/v1/ping").json()

    @app.get("/pool")
    async def pool_info(request: Request) -> Any:
        return {"names": list(httpool.get_pool(request).names)}

    return app


def test_route_gets_the_provider_client(upstream: Upstream, anyio_backend: Backend) -> None:
    """A route's dependency gets the provider's client, base_url and headers applied."""
    with TestClient(make_app(upstream), backend=anyio_backend) as client:
        body = client.get("/proxy").json()
    assert body["path"] == "/v1/ping"
    assert body["headers"]["authorization"] == "Bearer sk-abcdef"


def test_two_hundred_requests_use_one_connection(
    upstream: Upstream, anyio_backend: Backend
) -> None:
    """200 requests through a route reach the upstream over a single TCP connection."""
    with TestClient(make_app(upstream), backend=anyio_backend) as client:
        for _ in range(200):
            assert client.get("/proxy").status_code == 200
    assert len(upstream.requests) == 200
    assert upstream.connections == 1


def test_three_test_clients_in_a_row(upstream: Upstream, anyio_backend: Backend) -> None:
    """Each `with TestClient(app)` run gets new clients bound to its own event loop."""
    app = make_app(upstream)
    seen: list[httpx.AsyncClient] = []
    for _ in range(3):
        with TestClient(app, backend=anyio_backend) as client:
            assert client.get("/proxy").status_code == 200
            seen.append(httpool.get_pool(client).client("up"))
            assert app.state.httpool is httpool.get_pool(client)
        assert not hasattr(app.state, "httpool")
    assert len({id(c) for c in seen}) == 3
    assert all(c.is_closed for c in seen)


def test_sync_route_uses_sync_client(upstream: Upstream, anyio_backend: Backend) -> None:
    """A `def` route gets the provider's thread-safe httpx.Client."""
    with TestClient(make_app(upstream), backend=anyio_backend) as client:
        assert client.get("/sync-proxy").json()["path"] == "/v1/ping"


def test_unknown_provider_fails_at_startup(upstream: Upstream, anyio_backend: Backend) -> None:
    """A route that depends on an unregistered provider stops startup, naming it and the known ones."""
    app = make_app(upstream)
    router = APIRouter()

    @router.get("/typo")
    async def typo(c: Annotated[httpx.AsyncClient, httpool.client("opnai")]) -> None: ...

    app.include_router(router, prefix="/v2")
    with (
        pytest.raises(httpool.UnknownProviderError, match="'opnai'; registered: up") as info,
        TestClient(app, backend=anyio_backend),
    ):
        pass
    assert "/v2/typo" in "".join(info.value.__notes__)


def test_unknown_provider_in_nested_dependency_fails(
    upstream: Upstream, anyio_backend: Backend
) -> None:
    """A provider used by a sub-dependency is checked too."""
    app = make_app(upstream)

    async def service(c: Annotated[httpx.AsyncClient, httpool.client("cohere")]) -> object:
        return c

    @app.get("/nested")
    async def nested(s: Annotated[object, Depends(service)]) -> None: ...

    with (
        pytest.raises(httpool.UnknownProviderError, match="'cohere'"),
        TestClient(app, backend=anyio_backend),
    ):
        pass


def _sub_app(provider_name: str, *, own_pool: Upstream | None = None) -> FastAPI:
    """A sub-app whose route depends on `provider_name`; with `own_pool`, it has an
    httpool lifespan of its own (which Starlette does not run when it is mounted)."""
    lifespan = None
    if own_pool is not None:
        lifespan = httpool.lifespan(httpool.Provider(provider_name, base_url=own_pool.url))
    sub = FastAPI(lifespan=lifespan)
    Client = Annotated[httpx.AsyncClient, httpool.client(provider_name)]  # noqa: N806

    @sub.get("/call")
    async def call(c: Client) -> Any:
        return {**(await c.get("/v1/ping")).json(), "provider": c.provider_name}  # type: ignore[attr-defined]

    return sub


def test_a_mounted_sub_app_uses_the_pool_of_the_app_it_is_mounted_in(
    upstream: Upstream, anyio_backend: Backend
) -> None:
    """The outer app's lifespan runs, the sub-app's does not: the sub-app's routes get the
    outer pool's client, credentials included."""
    app = make_app(upstream)
    app.mount("/sub", _sub_app("up", own_pool=upstream))
    with TestClient(app, backend=anyio_backend) as client:
        body = client.get("/sub/call").json()
    assert (body["path"], body["provider"]) == ("/v1/ping", "up")
    assert body["headers"]["authorization"] == "Bearer sk-abcdef"  # the outer provider's


def test_a_mounted_sub_apps_unknown_provider_fails_at_startup(
    upstream: Upstream, anyio_backend: Backend
) -> None:
    """The start-up check walks mounted sub-apps: a provider only the sub-app's own
    (never run) lifespan would register stops the outer app, naming the route."""
    app = make_app(upstream)
    app.mount("/sub", _sub_app("voyage", own_pool=upstream))
    with (
        pytest.raises(httpool.UnknownProviderError, match="'voyage'; registered: up") as info,
        TestClient(app, backend=anyio_backend),
    ):
        pass
    assert "/sub/call" in "".join(info.value.__notes__)


def test_check_routes_can_be_turned_off(upstream: Upstream, anyio_backend: Backend) -> None:
    """With check_routes=False the app starts; the route fails at request time instead."""
    app = make_app(upstream, check_routes=False)

    @app.get("/typo")
    async def typo(c: Annotated[httpx.AsyncClient, httpool.client("opnai")]) -> None: ...

    with (
        TestClient(app, backend=anyio_backend) as client,
        pytest.raises(httpool.UnknownProviderError),
    ):
        client.get("/typo")


def test_bare_test_client_says_how_to_run_the_lifespan(
    upstream: Upstream, anyio_backend: Backend
) -> None:
    """Without `with`, the lifespan does not run and the error says what to do."""
    client = TestClient(make_app(upstream), backend=anyio_backend)
    with pytest.raises(LookupError, match="with TestClient\\(app\\) as client"):
        client.get("/proxy")


def test_get_pool_accepts_app_and_test_client(upstream: Upstream, anyio_backend: Backend) -> None:
    """get_pool finds the running pool from the app and the TestClient, not after shutdown."""
    app = make_app(upstream)
    with TestClient(app, backend=anyio_backend) as client:
        assert httpool.get_pool(app) is httpool.get_pool(client)
        assert client.get("/pool").json() == {"names": ["up"]}
    with pytest.raises(LookupError, match="httpool.lifespan"):
        httpool.get_pool(app)


def test_wrapped_lifespan_state_is_merged(upstream: Upstream, anyio_backend: Backend) -> None:
    """The app's own lifespan runs inside the pool's and its state is merged in."""
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        pool = httpool.get_pool(app)
        events.append(f"start:{pool.state.value}")
        yield {"model": "voyage-3"}
        events.append(f"stop:{pool.state.value}")

    app = make_app(upstream, wrap=own)

    @app.get("/state")
    async def state(request: Request) -> Any:
        return {"model": request.state.model, "pool": type(request.state.httpool).__name__}

    with TestClient(app, backend=anyio_backend) as client:
        assert client.get("/state").json() == {"model": "voyage-3", "pool": "ClientPool"}
    assert events == ["start:open", "stop:open"]


def test_pool_closes_when_app_lifespan_fails(upstream: Upstream, anyio_backend: Backend) -> None:
    """When the wrapped lifespan fails at startup, the pool is still closed."""
    pools: list[httpool.ClientPool] = []

    @contextlib.asynccontextmanager
    async def broken(app: FastAPI) -> AsyncIterator[None]:
        pools.append(httpool.get_pool(app))
        raise RuntimeError("database unreachable")
        yield  # pragma: no cover

    app = make_app(upstream, wrap=broken)
    with (
        pytest.raises(RuntimeError, match="database unreachable"),
        TestClient(app, backend=anyio_backend),
    ):
        pass
    assert pools[0].state is httpool.PoolState.CLOSED
    assert not hasattr(app.state, "httpool")


def test_lifespan_accepts_a_pool(upstream: Upstream, anyio_backend: Backend) -> None:
    """A ClientPool made by the app can be handed to lifespan() and reopens per run."""
    pool = httpool.ClientPool(httpool.Provider("up", base_url=upstream.url))
    app = FastAPI(lifespan=httpool.lifespan(pool))

    @app.get("/proxy")
    async def proxy(up: Up) -> Any:
        return (await up.get("/x")).json()

    for _ in range(2):
        with TestClient(app, backend=anyio_backend) as client:
            assert client.get("/proxy").json()["path"] == "/x"
            assert httpool.get_pool(client) is pool
    with pytest.raises(httpool.ConfigError, match="not both"):
        httpool.lifespan(pool, httpool.Provider("x", base_url="http://x"))


def test_starlette_app(upstream: Upstream, anyio_backend: Backend) -> None:
    """A plain Starlette app gets the pool through get_pool(request)."""

    async def endpoint(request: Request) -> JSONResponse:
        up = httpool.get_pool(request).client("up")
        return JSONResponse((await up.get("/s")).json())

    app = Starlette(
        routes=[Route("/", endpoint)],
        lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream.url)),
    )
    with TestClient(app, backend=anyio_backend) as client:
        assert client.get("/").json()["path"] == "/s"


@pytest.mark.anyio
async def test_asgi_transport_with_lifespan_manager(upstream: Upstream) -> None:
    """The async test style: LifespanManager runs the lifespan, ASGITransport sends requests."""
    app = make_app(upstream)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://app"
        ) as client,
    ):
        responses = [await client.get("/proxy") for _ in range(20)]
        assert httpool.get_pool(manager.app) is httpool.get_pool(app)
    assert [r.status_code for r in responses] == [200] * 20
    assert upstream.connections == 1


@pytest.mark.anyio
async def test_get_pool_accepts_the_lifespan_managers_app(upstream: Upstream) -> None:
    """`get_pool(manager.app)` is the running pool under asgi-lifespan, whose `manager.app`
    adds the lifespan state to each scope; before the run and after it, the how-to error."""
    app = make_app(upstream)
    manager = LifespanManager(app)
    with pytest.raises(LookupError, match="httpool.lifespan"):
        httpool.get_pool(manager.app)
    async with manager:
        pool = httpool.get_pool(manager.app)
        assert pool is app.state.httpool
        assert app.state.httpool.state is httpool.PoolState.OPEN
        assert (await pool.client("up").get("/direct")).json()["path"] == "/direct"
    assert pool.state is httpool.PoolState.CLOSED
    with pytest.raises(LookupError, match="httpool.lifespan"):
        httpool.get_pool(manager.app)


@pytest.mark.anyio
async def test_get_pool_does_not_run_the_app_it_probes(upstream: Upstream) -> None:
    """An ASGI function that adds no state is not a pool; probing it runs nothing of it:
    the probe stops at the first use of the scope (read, copy, size, delete, another key
    set) or of receive and send."""
    calls: list[str] = []

    async def reads(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    async def copies(scope: Any, receive: Any, send: Any) -> None:
        calls.append(str(dict(scope)))

    async def sizes(scope: Any, receive: Any, send: Any) -> None:
        calls.append(str(len(scope)))

    async def deletes(scope: Any, receive: Any, send: Any) -> None:
        del scope["state"]
        calls.append("deleted")

    async def sets_another_key(scope: Any, receive: Any, send: Any) -> None:
        scope["app"] = None
        calls.append("set")

    async def receives(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        calls.append("received")

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        calls.append("wrapper")
        await reads(scope, receive, send)

    probed = (reads, copies, sizes, deletes, sets_another_key, receives, wrapper)
    async with LifespanManager(make_app(upstream)):
        for source in (*probed, object(), None):
            with pytest.raises(LookupError, match="httpool.lifespan"):
                httpool.get_pool(source)
    assert calls == ["wrapper"]  # each stopped at its first use of the scope


@pytest.mark.anyio
async def test_asgi_transport_without_lifespan_says_what_to_do(upstream: Upstream) -> None:
    """ASGITransport without LifespanManager gives the how-to error, not an AttributeError."""
    transport = httpx.ASGITransport(app=make_app(upstream))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        with pytest.raises(LookupError, match="LifespanManager"):
            await client.get("/proxy")


def test_secret_never_logged(
    upstream: Upstream, caplog: pytest.LogCaptureFixture, anyio_backend: Backend
) -> None:
    """With every logger at DEBUG, a run of requests logs nothing that shows the key."""
    with (
        caplog.at_level(logging.DEBUG),
        TestClient(make_app(upstream), backend=anyio_backend) as client,
    ):
        client.get("/proxy")
        stats = httpool.get_pool(client).stats()
        assert "sk-abcdef" not in repr(httpool.get_pool(client).providers)
    assert caplog.records
    assert all("sk-abcdef" not in r.getMessage() for r in caplog.records)
    assert "sk-abcdef" not in str(stats)


def test_dependency_reprs() -> None:
    """The dependency objects read like the calls that made them."""
    assert repr(httpool.client("openai").dependency) == "httpool.client('openai')"
    assert repr(httpool.sync_client("openai").dependency) == "httpool.sync_client('openai')"
    with pytest.raises(httpool.ConfigError):
        httpool.client("bad name")
