"""Typing checks of the public API: `make typecheck` runs mypy --strict on this file.

Nothing here runs; mypy fails when a public name's type drifts from what users write.
"""

from __future__ import annotations

from typing import Annotated, Any, assert_type

import httpx
from fastapi import FastAPI

import httpool
from httpool.testing import assert_no_leaks, override_transport

provider = httpool.Provider(
    "openai",
    base_url="https://api.openai.com/v1",
    headers={"Authorization": httpool.Secret("Bearer sk-...")},
    timeout=httpx.Timeout(60.0, connect=5.0),
    limits=httpx.Limits(max_connections=50),
)
assert_type(provider.with_overrides(read_timeout=90.0), httpool.Provider)
assert_type(provider.origin, str | None)
assert_type(httpool.limits(max_connections=50), httpx.Limits)
assert_type(httpool.timeout(read=90), httpx.Timeout)
assert_type(httpool.__version__, str)

app = FastAPI(lifespan=httpool.lifespan(provider, drain_timeout=2.0))
assert_type(httpool.lifespan(provider).pool, httpool.ClientPool)
OpenAI = Annotated[httpx.AsyncClient, httpool.client("openai")]
SyncOpenAI = Annotated[httpx.Client, httpool.sync_client("openai")]
app.include_router(httpool.router(prefix="/httpool"))
httpool.install_error_handlers(app)


async def use(pool: httpool.ClientPool) -> None:
    assert_type(pool.client("openai"), httpx.AsyncClient)
    assert_type(await pool.get_client("voyage", read_timeout=90.0), httpx.AsyncClient)
    assert_type(pool.get_client_sync("voyage"), httpx.AsyncClient)
    assert_type(pool.sync_client("openai"), httpx.Client)
    assert_type(pool.has_client("openai"), bool)
    assert_type(pool.names, tuple[str, ...])
    assert_type(await pool.close_client("openai"), bool)
    assert_type(pool.stats(), dict[str, dict[str, Any]])
    assert_type(pool.state, httpool.PoolState)
    assert_type(httpool.get_pool(app), httpool.ClientPool)
    response = await pool.client("openai").send(httpx.Request("GET", "/"), stream=True)
    assert_type(httpool.proxy_stream(response), httpool.UpstreamStreamingResponse)
    assert_type(httpool.providers_from_env(), list[httpool.Provider])
    assert_type(httpool.per_worker(httpx.Limits()), httpx.Limits)
    assert_type(httpool.PoolTransport(http2=True), httpool.PoolTransport)
    with override_transport(app, "openai", lambda request: httpx.Response(200)):
        assert_no_leaks(pool)
    await pool.aclose()


async def default_kinds(pool: httpool.ClientPool) -> None:
    assert_type(pool.client("openai"), httpx.AsyncClient)
    assert_type(pool.client("openai", httpx.AsyncClient), httpx.AsyncClient)
    assert_type(pool.sync_client("openai"), httpx.Client)
    assert_type(pool.sync_client("openai", httpx.Client), httpx.Client)
