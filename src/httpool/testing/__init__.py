"""Test helpers: fake a provider's upstream for one test, and check that nothing leaked.

```python
import httpx
from fastapi.testclient import TestClient
from httpool.testing import assert_no_leaks, override_transport

from myapp import app  # app = FastAPI(lifespan=httpool.lifespan(...))


def fake_openai(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"content": "Paris"}}]})


def test_chat() -> None:
    with override_transport(app, "openai", fake_openai), TestClient(app) as client:
        assert client.post("/chat", params={"prompt": "hi"}).json() == {"answer": "Paris"}
        assert_no_leaks(client)
```

With pytest, the `httpool_mock` and `httpool_assert_no_leaks` fixtures do the same
(the plugin is registered when httpool is installed).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Protocol, Self, TypeAlias

import httpx

from .._asgi._state import get_pool
from .._errors import UnknownProviderError
from .._pool import ClientPool, PoolState

__all__ = [
    "Fake",
    "Router",
    "TransportOverrides",
    "assert_no_leaks",
    "find_leaks",
    "find_pool",
    "override_transport",
]


class Router(Protocol):
    """What httpool needs of a respx router (`respx.Router`, `respx.MockRouter`)."""

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        """Answer `request` from the router's routes."""
        ...


#: A fake upstream: an async transport such as `httpx.MockTransport`, a handler function
#: `(httpx.Request) -> httpx.Response` (or an async one), or a respx router.
Fake: TypeAlias = (
    httpx.AsyncBaseTransport
    | Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]
    | Router
)


def _as_transport(fake: Fake) -> httpx.AsyncBaseTransport:
    """The async transport for `fake`: as it is, or wrapped in `httpx.MockTransport`."""
    if isinstance(fake, httpx.AsyncBaseTransport):
        return fake
    async_handler = getattr(fake, "async_handler", None)  # respx.Router, respx.MockRouter
    if callable(async_handler):
        return httpx.MockTransport(async_handler)
    if callable(fake) and not isinstance(fake, httpx.BaseTransport):
        return httpx.MockTransport(fake)
    msg = (
        f"expected an httpx.AsyncBaseTransport (such as httpx.MockTransport), a function "
        f"taking an httpx.Request and returning an httpx.Response, or a respx router; "
        f"got {fake!r}"
    )
    raise TypeError(msg)


@contextlib.contextmanager
def override_transport(target: object, name: str, fake: Fake) -> Iterator[httpx.AsyncBaseTransport]:
    """Send provider `name`'s requests to `fake` while the block runs.

    Enter it before the app starts (before `with TestClient(app)`): the pool makes its
    clients when the lifespan starts, and this changes the provider they are made from.
    The provider's base URL, headers, auth, timeout and origin check still apply, so
    the fake sees the requests as the upstream would; its warm-up is turned off.

    Arguments:
        target: the app whose lifespan is `httpool.lifespan(...)` (FastAPI or
            Starlette, also behind middleware or in a not yet started `TestClient`),
            that lifespan itself, or a `ClientPool`.
        name: the provider to fake.
        fake: see `Fake`. A respx router answers through its `async_handler`; create it
            with `respx.MockRouter(base_url=...)`, no need to start it.

    Yields the transport in use.
    """
    pool = find_pool(target, name)
    if pool.state in (PoolState.OPEN, PoolState.CLOSING):
        msg = (
            f"override_transport(..., {name!r}): the app is already running; enter it "
            "before the app starts, e.g. `with override_transport(app, ...), TestClient(app):`"
        )
        raise RuntimeError(msg)
    transport = _as_transport(fake)
    with pool.override(name, transport=transport, warmup=0):
        yield transport


class TransportOverrides:
    """Several `override_transport`s, undone together; what `httpool_mock` hands a test.

    ```python
    with TransportOverrides() as fakes:
        fakes.add(app, "openai", fake_openai)
        fakes.add(app, "voyage", httpx.MockTransport(fake_voyage))
        with TestClient(app) as client: ...
    ```
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def add(self, target: object, name: str, fake: Fake) -> httpx.AsyncBaseTransport:
        """Fake provider `name` of `target` until `close()`; return the transport in use."""
        return self._stack.enter_context(override_transport(target, name, fake))

    def close(self) -> None:
        """Undo every override, the last one first."""
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def find_pool(target: object, name: str | None = None) -> ClientPool:
    """The `ClientPool` of an app, a lifespan made by `httpool.lifespan`, or a pool.

    Works before the app starts. With `name`, the pool must register that provider.
    """
    pools = list(dict.fromkeys(_pools_in(target, set(), depth=0)))  # unique, in order
    if not pools:
        msg = (
            f"no httpool pool found in {target!r}: pass the app whose lifespan is "
            "httpool.lifespan(...), that lifespan, or the ClientPool"
        )
        raise LookupError(msg)
    if name is None:
        return pools[0]
    having = [p for p in pools if name in p.providers]
    if not having:
        raise UnknownProviderError(name, {n for p in pools for n in p.providers})
    return having[0]


def _pools_in(obj: object, seen: set[int], depth: int) -> Iterator[ClientPool]:
    """Pools reachable from an app: its router's lifespan, and the closures it wraps."""
    if depth > 8 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, ClientPool):
        yield obj
        return
    own = getattr(obj, "pool", None)  # the object httpool.lifespan() returns
    if isinstance(own, ClientPool):
        yield own
        return
    if inspect.isfunction(obj):
        for cell in obj.__closure__ or ():
            with contextlib.suppress(ValueError):  # an empty cell
                yield from _pools_in(cell.cell_contents, seen, depth + 1)
        yield from _pools_in(getattr(obj, "__wrapped__", None), seen, depth + 1)
        return
    for attribute in ("router", "lifespan_context", "app"):  # app → router → lifespan
        inner = getattr(obj, attribute, None)
        if inner is not None and not isinstance(inner, type):
            yield from _pools_in(inner, seen, depth + 1)


def find_leaks(pool: ClientPool) -> dict[str, list[str]]:
    """What each provider of an open pool still holds: open responses, busy connections.

    An empty dict means nothing leaked.
    """
    if pool.state is not PoolState.OPEN:
        msg = (
            f"the pool is {pool.state.value}: check for leaks while the app runs, inside "
            "`with TestClient(app)` (its clients are gone once it closed)"
        )
        raise RuntimeError(msg)
    stats = pool.stats()
    leaks: dict[str, list[str]] = {}
    for name in pool.names:
        if not pool.has_client(name):
            continue
        found = []
        counters = stats.get(name, {})
        for key, what in (
            (
                "requests_in_flight",
                "request(s) or streamed response(s) not closed (use "
                "`async with client.stream(...)`, or `await response.aclose()`)",
            ),
            ("connections_in_use", "connection(s) checked out of the pool"),
            ("waiters", "request(s) waiting for a connection"),
        ):
            count = counters.get(key)
            if isinstance(count, int) and count > 0:
                found.append(f"{count} {what}")
        if found:
            leaks[name] = found
    return leaks


def assert_no_leaks(target: object) -> None:
    """Fail when a provider still has a response open or a connection checked out.

    `target` is a `ClientPool`, or what `httpool.get_pool` takes: a running app, a
    `TestClient` inside its `with` block, a request. Call it once the requests under
    test are done and while the app runs. Raises `AssertionError` naming each provider.
    """
    pool = target if isinstance(target, ClientPool) else get_pool(target)
    leaks = find_leaks(pool)
    if leaks:
        lines = [f"{name!r}: {'; '.join(found)}" for name, found in leaks.items()]
        raise AssertionError("httpool leak check failed:\n  " + "\n  ".join(lines))
