"""The FastAPI app of the end-to-end bench, one variant per process.

``GET /proxy`` calls the upstream's ``/embed`` and returns its JSON. The variant and the
upstream come from the environment (``BENCH_VARIANT``, ``BENCH_UPSTREAM``) and the app is
served by uvicorn: ``uvicorn --factory bench.e2e_app:create_app``.

- ``naive``: one shared `httpx.AsyncClient(base_url=...)` made in the lifespan, with
  httpx's defaults, as most apps write it.
- ``httpool``: ``httpool.lifespan(httpool.Provider("up", base_url=...))`` and
  ``Annotated[httpx.AsyncClient, httpool.client("up")]``, httpool's defaults.
- ``httpx-aiohttp``: a shared `httpx.AsyncClient` on `httpx_aiohttp.AiohttpTransport`.
- ``aiohttp``: a shared `aiohttp.ClientSession`.
- ``control``: the same route returning the same JSON without calling anything: the
  ceiling of the app server itself on this machine.

httpx-aiohttp and aiohttp use httpool's default limits (100 connections).

Every app also answers ``GET /__whoami`` with the file httpool was imported from, so the
bench can check that a baseline app (``--baseline REV``) runs the tree it should.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

import httpx
from fastapi import FastAPI, Request

import httpool

from .variants import LIMITS

__all__ = ["E2E_VARIANTS", "create_app"]

E2E_VARIANTS: Final = ("httpool", "httpool-httpx2", "naive", "httpx-aiohttp", "aiohttp")
#: Runs in every round too, but is no client: it answers without an upstream call.
CONTROL: Final = "control"

#: What a route asks for; FastAPI resolves this alias from the module's globals.
UpClient = Annotated[httpx.AsyncClient, httpool.client("up")]


def _httpool_app(upstream: str, rate_limit: httpool.RateLimit | None = None) -> FastAPI:
    """The httpool app; with `rate_limit` (only `bench.instructions --limits` sets one, far
    above what the run reaches): what the limiter costs a request it admits at once."""
    provider = httpool.Provider("up", base_url=upstream)
    if rate_limit is not None:  # (a baseline tree's Provider may have no rate_limit)
        provider = httpool.Provider("up", base_url=upstream, rate_limit=rate_limit)
    app = FastAPI(lifespan=httpool.lifespan(provider))

    @app.get("/proxy")
    async def proxy(up: UpClient) -> Any:
        response = await up.get("/embed")
        response.raise_for_status()
        return response.json()

    return app


def _httpool_no_dependency_app(upstream: str) -> FastAPI:
    """The httpool app with the client taken from the pool in the route: no dependency
    (only `bench.instructions` runs it, to tell the dependency's cost apart)."""
    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream)))

    @app.get("/proxy")
    async def proxy(request: Request) -> Any:
        response = await httpool.get_pool(request).client("up").get("/embed")
        response.raise_for_status()
        return response.json()

    return app


def _httpool_yield_dependency_app(upstream: str) -> FastAPI:
    """The httpool app with the route dependency in its public `yield` form, which
    `httpool.client()` gives on a FastAPI whose request stack httpool has not checked
    (only `bench.instructions` runs it: what the stack form saves)."""
    from fastapi import Depends

    from httpool._asgi._dependencies import YieldClientDependency

    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream)))
    dependency = Depends(YieldClientDependency("up"))

    @app.get("/proxy")
    async def proxy(up: httpx.AsyncClient = dependency) -> Any:
        response = await up.get("/embed")
        response.raise_for_status()
        return response.json()

    return app


def _httpool_httpx2_app(upstream: str) -> FastAPI:
    """The httpool app with the route on the provider's `httpx2.AsyncClient` (same engine)."""
    import httpx2

    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream)))
    dependency = httpool.client("up", httpx2.AsyncClient)

    @app.get("/proxy")
    async def proxy(up: httpx2.AsyncClient = dependency) -> Any:
        response = await up.get("/embed")
        response.raise_for_status()
        return response.json()

    return app


def _shared_httpx_app(upstream: str, *, aiohttp_transport: bool) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if aiohttp_transport:
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=LIMITS)
            client = httpx.AsyncClient(base_url=upstream, transport=transport)
        else:
            client = httpx.AsyncClient(base_url=upstream)
        async with client:
            app.state.client = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/proxy")
    async def proxy(request: Request) -> Any:
        client: httpx.AsyncClient = request.app.state.client
        response = await client.get("/embed")
        response.raise_for_status()
        return response.json()

    return app


def _aiohttp_app(upstream: str) -> FastAPI:
    import aiohttp

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(
            limit=LIMITS.max_connections or 0, keepalive_timeout=LIMITS.keepalive_expiry or 0
        )
        async with aiohttp.ClientSession(upstream, connector=connector) as session:
            app.state.session = session
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/proxy")
    async def proxy(request: Request) -> Any:
        session: aiohttp.ClientSession = request.app.state.session
        async with session.get("embed") as response:
            response.raise_for_status()
            return await response.json()

    return app


def _control_app() -> FastAPI:
    import json

    from .upstream import BODY

    payload = json.loads(BODY)
    app = FastAPI()

    @app.get("/proxy")
    async def proxy() -> Any:
        return payload

    return app


def _app(variant: str, upstream: str) -> FastAPI:
    if variant == "httpool":
        return _httpool_app(upstream)
    if variant == "httpool-httpx2":
        return _httpool_httpx2_app(upstream)
    if variant == "httpool-no-dependency":
        return _httpool_no_dependency_app(upstream)
    if variant == "httpool-yield-dependency":
        return _httpool_yield_dependency_app(upstream)
    if variant in {"httpool-limit-memory", "httpool-limit-redis"}:
        storage = "memory://" if variant.endswith("memory") else os.environ["BENCH_REDIS"]
        return _httpool_app(upstream, httpool.RateLimit("1000000/minute", storage=storage))
    if variant in {"naive", "httpx-aiohttp"}:
        return _shared_httpx_app(upstream, aiohttp_transport=variant == "httpx-aiohttp")
    if variant == "aiohttp":
        return _aiohttp_app(upstream)
    if variant == CONTROL:
        return _control_app()
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join((*E2E_VARIANTS, CONTROL))}")


def create_app() -> FastAPI:
    """The app for ``$BENCH_VARIANT`` against ``$BENCH_UPSTREAM`` (a URL ending in ``/``)."""
    app = _app(os.environ["BENCH_VARIANT"], os.environ["BENCH_UPSTREAM"])

    @app.get("/__whoami")
    async def whoami() -> dict[str, str]:
        return {"httpool_file": httpool.__file__ or ""}

    return app
