"""Where a running pool lives for the app: its state key, and `get_pool()` that finds it."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, MutableMapping
from typing import Any, NoReturn

from starlette.requests import HTTPConnection

from .._pool import ClientPool, PoolState

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
    """The running pool of a request, websocket, app, `TestClient`, or asgi-lifespan's
    `manager.app`.

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
    if pool is None and inspect.iscoroutinefunction(source):
        pool = _lifespan_state(source).get(STATE_KEY)
        if isinstance(pool, ClientPool) and pool.state is not PoolState.OPEN:
            pool = None  # the state outlives the run; its pool's clients are closed
    if isinstance(pool, ClientPool):
        return pool
    raise LookupError(_HOW_TO)


class _Stop(Exception):  # noqa: N818  # not an error: ends the probe's call
    """Raised by the probe scope to end the call before the app behind the wrapper runs."""


class _ProbeScope(MutableMapping[str, Any]):
    """A scope that takes only a `"state"` and stops the call at any other use."""

    def __init__(self) -> None:
        self.state: Any = None

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "state":
            self.state = value
        raise _Stop

    def __getitem__(self, key: str) -> NoReturn:
        raise _Stop

    def __delitem__(self, key: str) -> NoReturn:
        raise _Stop

    def __iter__(self) -> Iterator[str]:
        raise _Stop

    def __len__(self) -> NoReturn:
        raise _Stop


async def _refuse(*_: Any) -> NoReturn:
    raise _Stop


def _lifespan_state(app: Any) -> dict[str, Any]:
    """The lifespan state that an ASGI app which adds it to every scope adds.

    asgi-lifespan's `manager.app` is such an app (a plain `async def`). It is called on a
    probe scope which records the `"state"` it is given and stops the call at that
    point, or at any other use of the scope, receive or send: the app behind the
    wrapper never runs. An app that does not add a state gives `{}`.
    """
    probe = _ProbeScope()
    call = app(probe, _refuse, _refuse)
    try:
        call.send(None)
    except (_Stop, StopIteration):
        pass
    finally:
        call.close()
    return probe.state if isinstance(probe.state, dict) else {}
