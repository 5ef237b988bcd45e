"""An app for the multi-worker metrics test: `uvicorn tests.policy.multiapp:create_app
--factory --workers 2`, calling the stub at `HTTPOOL_TEST_STUB`."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.

import os
from typing import Annotated

import httpx
from fastapi import FastAPI

import httpool

Stub = Annotated[httpx.AsyncClient, httpool.client("stub")]


def create_app() -> FastAPI:
    provider = httpool.Provider("stub", base_url=os.environ["HTTPOOL_TEST_STUB"], retry=True)
    app = FastAPI(lifespan=httpool.lifespan(provider))
    app.include_router(httpool.router(prefix="/ops"))

    @app.get("/call")
    async def call(client: Stub) -> dict[str, int]:
        response = await client.get("/a")
        return {"pid": os.getpid(), "status": response.status_code}

    return app
