"""httpool.testing and the pytest plugin: fake upstreams for a test, and the leak check."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.

import contextlib
import importlib.metadata
import textwrap
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from starlette.middleware.gzip import GZipMiddleware

import httpool
from httpool.testing import (
    TransportOverrides,
    assert_no_leaks,
    find_leaks,
    find_pool,
    override_transport,
)

from .upstream import Upstream

pytest_plugins = ["pytester"]

OpenAI = Annotated[httpx.AsyncClient, httpool.client("openai")]
KEY = "sk-test-0a1b2c3d"


def openai_provider(
    base_url: str = "https://api.openai.com/v1", **options: Any
) -> httpool.Provider:
    """The app's provider, as production configures it: a real URL and a key."""
    return httpool.Provider(
        "openai",
        base_url=base_url,
        headers={"Authorization": httpool.Secret(f"Bearer {KEY}")},
        **options,
    )


def add_routes(app: FastAPI) -> FastAPI:
    """The route under test: it asks the provider and returns the answer."""

    @app.post("/chat")
    async def chat(openai: OpenAI) -> Any:
        response = await openai.post("/chat/completions", json={"prompt": "hi"})
        return {"status": response.status_code, "answer": response.json()}

    return app


def fake_openai(request: httpx.Request) -> httpx.Response:
    """A fake upstream that checks what httpool sent and answers like the API."""
    assert request.url == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    return httpx.Response(200, json={"fake": True})


# -- override_transport ----------------------------------------------------------------


def test_a_handler_replaces_the_upstream() -> None:
    """A handler function answers the app's requests, with base URL and headers applied."""
    app = add_routes(FastAPI(lifespan=httpool.lifespan(openai_provider())))
    with override_transport(app, "openai", fake_openai), TestClient(app) as client:
        assert client.post("/chat").json() == {"status": 200, "answer": {"fake": True}}


def test_an_async_handler_and_a_mock_transport() -> None:
    """An async handler works, and so does an httpx.MockTransport given as it is."""

    async def async_fake(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"async": True})

    app = add_routes(FastAPI(lifespan=httpool.lifespan(openai_provider())))
    with override_transport(app, "openai", async_fake), TestClient(app) as client:
        assert client.post("/chat").json()["status"] == 201
    mock = httpx.MockTransport(fake_openai)
    with override_transport(app, "openai", mock) as used, TestClient(app) as client:
        assert used is mock
        assert client.post("/chat").json()["answer"] == {"fake": True}


def test_a_respx_router() -> None:
    """A respx router answers through its async handler and records the calls."""
    respx = pytest.importorskip("respx")
    router = respx.MockRouter(base_url="https://api.openai.com/v1")
    route = router.post("/chat/completions").respond(200, json={"respx": True})
    app = add_routes(FastAPI(lifespan=httpool.lifespan(openai_provider())))
    with override_transport(app, "openai", router), TestClient(app) as client:
        assert client.post("/chat").json()["answer"] == {"respx": True}
    assert route.call_count == 1
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"


def test_the_real_upstream_is_back_after_the_block(upstream: Upstream) -> None:
    """Once the block ends, the next run of the app talks to the configured upstream again."""
    app = FastAPI(lifespan=httpool.lifespan(openai_provider(upstream.url)))

    @app.get("/where")
    async def where(openai: OpenAI) -> Any:
        return (await openai.get("/ping")).json()

    with override_transport(app, "openai", lambda r: httpx.Response(200, json={"path": "fake"})):
        with TestClient(app) as client:
            assert client.get("/where").json() == {"path": "fake"}
        assert upstream.requests == []
    with TestClient(app) as client:
        assert client.get("/where").json()["path"] == "/ping"


def test_warm_up_does_not_reach_the_fake() -> None:
    """A provider with warmup=N sends no warm-up requests to its fake."""
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(200, json={})

    app = add_routes(FastAPI(lifespan=httpool.lifespan(openai_provider(warmup=3))))
    with override_transport(app, "openai", record), TestClient(app) as client:
        client.post("/chat")
    assert seen == ["POST"]


@contextlib.asynccontextmanager
async def own_lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    """An app's own lifespan, wrapped by httpool's."""
    yield {"own": True}


def app_and_target(kind: str) -> tuple[FastAPI, object]:
    """An app whose lifespan runs a pool with 'openai', and what to pass to find it."""
    lifespan = httpool.lifespan(openai_provider(), wrap=own_lifespan)
    if kind == "pool":
        pool = httpool.ClientPool(openai_provider())
        return add_routes(FastAPI(lifespan=httpool.lifespan(pool))), pool
    app = add_routes(FastAPI(lifespan=lifespan))
    if kind == "lifespan":
        return app, lifespan
    if kind == "middleware":
        app.add_middleware(GZipMiddleware)
        return app, app
    if kind == "test client":
        return app, TestClient(app)
    if kind == "router lifespan":
        app.include_router(APIRouter(lifespan=own_lifespan))
        return app, app
    return app, app


@pytest.mark.parametrize(
    "kind", ["app", "lifespan", "pool", "middleware", "test client", "router lifespan"]
)
def test_the_pool_is_found_from_any_target(kind: str) -> None:
    """The pool is found from the app, its lifespan, the pool, a TestClient, before start."""
    app, target = app_and_target(kind)
    with override_transport(target, "openai", fake_openai), TestClient(app) as client:
        assert client.post("/chat").json()["answer"] == {"fake": True}


def test_overriding_a_running_app_is_refused() -> None:
    """Inside `with TestClient(app)` the clients exist already: the error says to go first."""
    app = add_routes(FastAPI(lifespan=httpool.lifespan(openai_provider())))
    with TestClient(app), pytest.raises(RuntimeError, match="already running"):  # noqa: SIM117
        with override_transport(app, "openai", fake_openai):
            pass


def test_unknown_names_and_targets() -> None:
    """An unknown provider lists the registered ones; an app without httpool is a LookupError."""
    app = add_routes(FastAPI(lifespan=httpool.lifespan(openai_provider())))
    with pytest.raises(httpool.UnknownProviderError, match="'opnai'; registered: openai"):  # noqa: SIM117
        with override_transport(app, "opnai", fake_openai):
            pass
    with pytest.raises(LookupError, match="no httpool pool found"):
        find_pool(FastAPI())


@pytest.mark.parametrize("fake", [None, "fake", httpx.HTTPTransport()])
def test_what_is_not_a_fake(fake: Any) -> None:
    """A value that is neither transport, handler nor router is refused, saying what fits."""
    app = add_routes(FastAPI(lifespan=httpool.lifespan(openai_provider())))
    with pytest.raises(TypeError, match="expected an httpx.AsyncBaseTransport"):  # noqa: SIM117
        with override_transport(app, "openai", fake):
            pass


def test_transport_overrides_are_undone_together() -> None:
    """TransportOverrides fakes several providers and restores them all on close."""
    voyage = httpool.Provider("voyage", base_url="https://api.voyageai.com/v1")
    pool = httpool.ClientPool(openai_provider(), voyage)
    before = pool.providers
    with TransportOverrides() as fakes:
        fakes.add(pool, "openai", fake_openai)
        fakes.add(pool, "voyage", lambda r: httpx.Response(204))
        assert pool.providers["voyage"].transport != "httpool"
    assert pool.providers == before
    assert pool.providers["openai"].transport == "httpool"


# -- the leak check --------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_open_stream_is_a_leak(upstream: Upstream) -> None:
    """A streamed response left open fails the check, naming the provider; closed, it passes."""
    async with httpool.ClientPool(httpool.Provider("up", base_url=upstream.url)) as pool:
        assert_no_leaks(pool)
        client = pool.client("up")
        response = await client.send(client.build_request("GET", "/stream?n=2"), stream=True)
        with pytest.raises(AssertionError) as info:
            assert_no_leaks(pool)
        message = str(info.value)
        assert message.startswith("httpool leak check failed:\n  'up': 1 request(s) or streamed")
        assert "1 connection(s) checked out of the pool" in message
        await response.aclose()
        assert_no_leaks(pool)
        assert find_leaks(pool) == {}


def test_the_check_through_a_test_client() -> None:
    """assert_no_leaks takes a running TestClient, and says to call it while the app runs."""
    app = add_routes(FastAPI(lifespan=httpool.lifespan(openai_provider())))
    with override_transport(app, "openai", fake_openai), TestClient(app) as client:
        client.post("/chat")
        assert_no_leaks(client)
        pool = httpool.get_pool(client)
    with pytest.raises(
        RuntimeError, match="the pool is closed: check for leaks while the app runs"
    ):
        assert_no_leaks(pool)


# -- the pytest plugin -----------------------------------------------------------------

PLUGIN_TESTS = """
import asyncio
from typing import Annotated

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

import httpool

app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("llm", base_url="https://llm.example")))


@app.get("/ask")
async def ask(llm: Annotated[httpx.AsyncClient, httpool.client("llm")]) -> dict:
    return (await llm.get("/answer")).json()


def test_mock(httpool_mock) -> None:
    httpool_mock.add(app, "llm", lambda request: httpx.Response(200, json={"a": 42}))
    with TestClient(app) as client:
        assert client.get("/ask").json() == {"a": 42}


def test_mock_is_undone() -> None:
    assert httpool.testing.find_pool(app).providers["llm"].transport == "httpool"


def test_clean(httpool_mock, httpool_assert_no_leaks) -> None:
    httpool_mock.add(app, "llm", lambda request: httpx.Response(200, json={}))
    with TestClient(app) as client:
        client.get("/ask")
        httpool_assert_no_leaks(client)


async def chunks():
    yield b"data: 1"


def test_leaky(httpool_assert_no_leaks) -> None:
    async def main() -> None:
        fake = httpx.MockTransport(lambda request: httpx.Response(200, content=chunks()))
        provider = httpool.Provider("llm", base_url="https://llm.example", transport=fake)
        async with httpool.ClientPool(provider, drain_timeout=0) as pool:
            client = pool.client("llm")
            await client.send(client.build_request("GET", "/stream"), stream=True)

    asyncio.run(main())
"""


def test_the_pytest_plugin(pytester: pytest.Pytester) -> None:
    """httpool_mock fakes a provider per test; httpool_assert_no_leaks fails a leaky test."""
    pytester.makepyfile(test_app="import httpool.testing\n" + textwrap.dedent(PLUGIN_TESTS))
    installed = importlib.metadata.entry_points(group="pytest11", name="httpool")
    args: list[str] = [] if installed else ["-p", "httpool.testing._pytest_plugin"]
    result = pytester.runpytest(*args, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaky*",
            "*an httpool pool closed with leaks:",
            "*'llm': 1 request(s) or streamed response(s) not closed*",
        ]
    )


def test_fixture_names_are_prefixed() -> None:
    """Every fixture of the plugin is named httpool_*, so none shadows a project's own."""
    from httpool.testing import _pytest_plugin

    assert _pytest_plugin.__all__ == ["httpool_assert_no_leaks", "httpool_mock"]


def test_the_public_names_of_httpool_testing() -> None:
    """httpool.testing's `__all__` is sorted and every name in it exists."""
    import httpool.testing

    assert httpool.testing.__all__ == sorted(httpool.testing.__all__)
    for name in httpool.testing.__all__:
        assert getattr(httpool.testing, name) is not None
