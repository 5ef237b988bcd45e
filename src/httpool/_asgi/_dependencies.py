"""`client()` and `sync_client()`: the FastAPI dependencies, and the startup check of them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, overload

import httpx
from fastapi import Depends
from starlette.requests import HTTPConnection

from .._clients import OpenStreams, kind_label
from .._errors import UnknownProviderError
from .._pool import ClientPool
from .._validate import validate_name
from ._request_stack import request_stack, stack_dependency_enabled
from ._state import get_pool

if TYPE_CHECKING:
    import httpx2

__all__ = ["check_app_dependencies", "client", "sync_client"]

logger = logging.getLogger("httpool")


class ProviderDependency:
    """Base of the dependency callables; FastAPI caches one result per request."""

    __slots__ = ("_hash", "kind", "name")
    _public = "client"
    _default: type = httpx.AsyncClient

    def __init__(self, name: str, kind: type | None = None) -> None:
        self.name = validate_name(name, where=f"httpool.{self._public}")
        self.kind = self._default if kind is None else kind
        self._hash = hash((type(self), self.name, self.kind))  # FastAPI hashes it per request

    def __repr__(self) -> str:
        if self.kind is self._default:
            return f"httpool.{self._public}({self.name!r})"
        return f"httpool.{self._public}({self.name!r}, {kind_label(self.kind)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProviderDependency) or type(other) is not type(self):
            return False
        return (other.name, other.kind) == (self.name, self.kind)

    def __hash__(self) -> int:
        return self._hash


class YieldClientDependency(ProviderDependency):
    """Hands a route the async client of one provider, and closes at the route's end
    the responses it opened and left open (FastAPI runs the code after `yield` once
    the response is sent). The public way; see `StackClientDependency` for the one
    used by default."""

    __slots__ = ()

    async def __call__(self, connection: HTTPConnection) -> AsyncIterator[Any]:
        client = get_pool(connection).client(self.name, self.kind)
        async with OpenStreams():
            yield client


class StackClientDependency(ProviderDependency):
    """`YieldClientDependency` without FastAPI's wrapping of a `yield` dependency: the
    same clean-up, pushed onto FastAPI's request exit stack, which FastAPI closes after
    the response is sent (a measured speed-up, the one place a private detail of
    FastAPI is read: `_request_stack.py`)."""

    __slots__ = ()
    _warned = False

    async def __call__(self, connection: HTTPConnection) -> Any:
        client = get_pool(connection).client(self.name, self.kind)
        stack = request_stack(connection.scope)
        if stack is None:
            if not StackClientDependency._warned:
                StackClientDependency._warned = True
                logger.warning(
                    "httpool.client(%r): this FastAPI keeps no request exit stack where "
                    "httpool expects it, so responses a route leaves open are not closed "
                    "at its end; set HTTPOOL_PUBLIC_DEPENDENCY=1 to use a yield dependency",
                    self.name,
                )
            return client
        stack.push(OpenStreams(stack).enter())
        return client


class SyncClientDependency(ProviderDependency):
    """Hands a `def` route the thread-safe sync client of one provider."""

    __slots__ = ()
    _public = "sync_client"
    _default = httpx.Client

    async def __call__(self, connection: HTTPConnection) -> Any:
        return get_pool(connection).sync_client(self.name, self.kind)


@overload
def client(name: str) -> Any: ...
@overload
def client(name: str, kind: type[httpx.AsyncClient]) -> Any: ...
@overload
def client(name: str, kind: type[httpx2.AsyncClient]) -> Any: ...
def client(name: str, kind: type[Any] = httpx.AsyncClient) -> Any:
    """A `Depends` that gives a route provider `name`'s async client of `kind`.

    ```python
    OpenAI = Annotated[httpx.AsyncClient, httpool.client("openai")]
    Anthropic = Annotated[httpx2.AsyncClient, httpool.client("anthropic", httpx2.AsyncClient)]

    @app.post("/chat")
    async def chat(openai: OpenAI) -> dict: ...
    ```
    """
    if stack_dependency_enabled():
        return Depends(StackClientDependency(name, kind))
    return Depends(YieldClientDependency(name, kind))


@overload
def sync_client(name: str) -> Any: ...
@overload
def sync_client(name: str, kind: type[httpx.Client]) -> Any: ...
@overload
def sync_client(name: str, kind: type[httpx2.Client]) -> Any: ...
def sync_client(name: str, kind: type[Any] = httpx.Client) -> Any:
    """A `Depends` that gives a `def` route provider `name`'s thread-safe sync client
    (`httpx.Client`, or `httpx2.Client`)."""
    return Depends(SyncClientDependency(name, kind))


def _dependants(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for route in routes:
        dependant = getattr(route, "dependant", None)
        if dependant is not None:
            yield f"{prefix}{getattr(route, 'path', '?')}", dependant
        # A Mount of a router or sub-app has `routes`; FastAPI >= 0.160 includes routers
        # lazily, keeping the included router as `original_router`.
        nested = getattr(route, "original_router", route)
        sub_routes = getattr(nested, "routes", None)
        if isinstance(sub_routes, list):
            context = getattr(route, "include_context", None)
            sub_prefix = getattr(context, "prefix", None) or getattr(route, "path", "")
            yield from _dependants(sub_routes, f"{prefix}{sub_prefix}")


def _provider_names(dependant: Any, seen: set[int]) -> Iterator[str]:
    for sub in getattr(dependant, "dependencies", ()):
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        if isinstance(sub.call, ProviderDependency):
            yield sub.call.name
        yield from _provider_names(sub, seen)


def check_app_dependencies(app: Any, pool: ClientPool) -> None:
    """Fail when a route depends on a provider that `pool` does not register."""
    routes = getattr(app, "routes", None)
    if not isinstance(routes, list):
        return
    known = pool.providers
    for path, dependant in _dependants(routes):
        for name in _provider_names(dependant, set()):
            if name not in known:
                error = UnknownProviderError(name, known)
                error.add_note(f"route {path!r} depends on httpool.client({name!r})")
                raise error
