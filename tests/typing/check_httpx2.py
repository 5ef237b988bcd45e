"""Typing checks of httpx2 clients and the SDK hand-offs (mypy --strict, `make typecheck`).

A user on httpx2 writes no `import httpx`: nothing here imports it.
"""

from __future__ import annotations

from typing import Annotated, assert_type

import anthropic
import httpx2
import openai
from fastapi import FastAPI

import httpool

provider = httpool.Provider(
    "openai",
    base_url="https://api.openai.com/v1",
    headers={"Authorization": httpool.Secret("Bearer sk-...")},
    timeout=httpx2.Timeout(60.0, connect=5.0),
    limits=httpx2.Limits(max_connections=50),
    transport=httpx2.MockTransport(lambda request: httpx2.Response(200)),
)
app = FastAPI(lifespan=httpool.lifespan(provider))

OpenAI = Annotated[httpx2.AsyncClient, httpool.client("openai", httpx2.AsyncClient)]
SyncOpenAI = Annotated[httpx2.Client, httpool.sync_client("openai", httpx2.Client)]


async def hand_off(pool: httpool.ClientPool) -> None:
    assert_type(pool.client("openai", httpx2.AsyncClient), httpx2.AsyncClient)
    assert_type(pool.sync_client("openai", httpx2.Client), httpx2.Client)
    sdk = openai.AsyncOpenAI(
        api_key="sk-...", http_client=pool.client("openai", httpx2.AsyncClient)
    )
    assert_type(sdk, openai.AsyncOpenAI)
    claude = anthropic.AsyncAnthropic(
        api_key="sk-ant-...", http_client=pool.client("anthropic", httpx2.AsyncClient)
    )
    assert_type(claude, anthropic.AsyncAnthropic)


@app.post("/chat")
async def chat(client: OpenAI) -> int:
    response = await client.post("/chat/completions", json={"model": "m"})
    return response.status_code


@app.get("/sync")
def sync_route(client: SyncOpenAI) -> int:
    return client.get("/models").status_code
