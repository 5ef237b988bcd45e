"""Where a running pool lives for the app: its state key, and `get_pool()` that finds it."""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection

from .._pool import ClientPool

__all__ = ["STATE_KEY", "get_pool"]

#: The key of the pool in the lifespan state and on `app.state`.
STATE_KEY = "httpool"

_HOW_TO = (
    "no running httpool pool: add lifespan=httpool.lifespan(httpool.Provider(...), ...) "
    "to FastAPI(...) or Starlette(...), and run the lifespan: in tests use "
    "`with TestClient(app) as client:` (a bare TestClient(app) does not run it) or "
    "asgi_lifespan.LifespanManager(app) with httpx.ASGITransport(app=manager.app)"
)


def get_pool(source: Any) -> ClientPool:
    """The running pool of a request, websocket, app, or `TestClient`.

    Raises `LookupError`, saying how to set one up, when no lifespan is running.
    """
    pool: object = None
    if isinstance(source, HTTPConnection):
        state = source.scope.get("state")
        pool = state.get(STATE_KEY) if state else None
        if pool is None and "app" in source.scope:
            source = source.scope["app"]
    if pool is None:
        app_state = getattr(source, "app_state", None)  # starlette.testclient.TestClient
        if isinstance(app_state, dict):
            pool = app_state.get(STATE_KEY)
            source = getattr(source, "app", source)
    if pool is None:
        pool = getattr(getattr(source, "state", None), STATE_KEY, None)
    if isinstance(pool, ClientPool):
        return pool
    raise LookupError(_HOW_TO)
