"""The ASGI integration: `lifespan()` runs the pool with the app; `get_pool()` finds it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

from starlette.requests import HTTPConnection

from ._config import Provider
from ._pool import ClientPool

__all__ = ["Lifespan", "get_pool", "lifespan"]

#: What `FastAPI(lifespan=...)` and `Starlette(lifespan=...)` take.
Lifespan: TypeAlias = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]

STATE_KEY = "httpool"

_HOW_TO = (
    "no running httpool pool: add lifespan=httpool.lifespan(httpool.Provider(...), ...) "
    "to FastAPI(...) or Starlette(...), and run the lifespan: in tests use "
    "`with TestClient(app) as client:` (a bare TestClient(app) does not run it) or "
    "asgi_lifespan.LifespanManager(app) with httpx.ASGITransport(app=manager.app)"
)


def lifespan(
    *providers_or_pool: Provider | ClientPool,
    wrap: Lifespan | None = None,
    check_routes: bool = True,
    drain_timeout: float = 5.0,
    close_timeout: float = 5.0,
) -> PoolLifespan:
    """A lifespan that runs a `ClientPool` for as long as the app runs.

    ```python
    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("openai", base_url=...)))
    ```

    At startup it checks the providers that the app's routes depend on, opens the pool
    (making every client inside the running loop), sets `app.state.httpool`, and yields
    `{"httpool": pool}` as lifespan state. At shutdown it closes the pool, even when
    startup or the wrapped lifespan failed, and removes `app.state.httpool`.

    Arguments:
        providers_or_pool: `Provider`s, or one `ClientPool`.
        wrap: the app's own lifespan, run inside the pool's; the state it yields is
            merged into the lifespan state.
        check_routes: fail at startup when a route depends on an unknown provider.
        drain_timeout: at shutdown, seconds to let requests in flight finish.
        close_timeout: then, seconds that closing every client may take.
    """
    pool = ClientPool._from(
        providers_or_pool, drain_timeout=drain_timeout, close_timeout=close_timeout
    )
    return PoolLifespan(pool, wrap=wrap, check_routes=check_routes)


class PoolLifespan:
    """What `lifespan()` returns: call it with the app to run the pool; `.pool` is it."""

    def __init__(self, pool: ClientPool, *, wrap: Lifespan | None, check_routes: bool) -> None:
        self.pool = pool
        self._wrap = wrap
        self._check_routes = check_routes

    @contextlib.asynccontextmanager
    async def __call__(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        pool = self.pool
        if self._check_routes:
            from ._depends import check_app_dependencies

            check_app_dependencies(app, pool)
        app_state = getattr(app, "state", None)
        from ._metrics import publish_metrics  # with several workers: /metrics adds them up

        async with pool, publish_metrics(pool):
            if app_state is not None:
                setattr(app_state, STATE_KEY, pool)
            try:
                if self._wrap is None:
                    yield {STATE_KEY: pool}
                else:
                    async with self._wrap(app) as state:
                        yield {**(state or {}), STATE_KEY: pool}
            finally:
                if app_state is not None and getattr(app_state, STATE_KEY, None) is pool:
                    delattr(app_state, STATE_KEY)

    def __repr__(self) -> str:
        return f"httpool.lifespan({self.pool!r})"


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
