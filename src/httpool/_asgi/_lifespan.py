"""`lifespan()`: runs the pool with the app, on `app.state` and in the lifespan state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

from .._config import Provider
from .._pool import ClientPool
from ._dependencies import check_app_dependencies
from ._state import STATE_KEY

__all__ = ["Lifespan", "lifespan"]

#: What `FastAPI(lifespan=...)` and `Starlette(lifespan=...)` take.
Lifespan: TypeAlias = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]


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
            check_app_dependencies(app, pool)
        app_state = getattr(app, "state", None)
        from .._ops._metrics import publish_metrics  # several workers: /metrics adds them up

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
