"""A FastAPI app that calls an upstream through httpool, for hypercorn's trio worker.

The tests run it as `hypercorn --worker-class trio trio_app:app` in a subprocess, with
the upstream's URL in `UPSTREAM_URL`; httpool's records go to stderr for the test to read.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Request

import httpool

logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

Up = Annotated[httpx.AsyncClient, httpool.client("up")]
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
