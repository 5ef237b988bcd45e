"""A FastAPI app that calls an upstream through httpool, for hypercorn's trio worker.

The tests run it as `hypercorn --worker-class trio 'trio_app:create_app()'` in a
subprocess, with the upstream's URL in `UPSTREAM_URL`; httpool's records go to stderr for
the test to read. Nothing happens at import (pytest-markdown-docs imports every module).
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Request

import httpool

Up = Annotated[httpx.AsyncClient, httpool.client("up")]


def create_app() -> FastAPI:
    """The app, calling the upstream at `UPSTREAM_URL`."""
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    app = FastAPI(
        lifespan=httpool.lifespan(httpool.Provider("up", base_url=os.environ["UPSTREAM_URL"]))
    )

    @app.get("/relay")
    async def relay(up: Up) -> Any:
        """Call the upstream and hand back what it answered."""
        response = await up.post("/v1/chat", json={"hello": "trio"})
        return {"status": response.status_code, "upstream": response.json()}

    @app.get("/stats")
    async def stats(request: Request) -> Any:
        """The pool's stats."""
        return httpool.get_pool(request).stats()

    return app
