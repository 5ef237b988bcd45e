"""`client()` and `sync_client()`: the FastAPI dependencies, and the startup check of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from fastapi import Depends
from starlette.requests import HTTPConnection

from ._clients import request_streams
from ._errors import UnknownProviderError
from ._lifespan import get_pool
from ._pool import ClientPool
from ._validate import validate_name

__all__ = ["check_app_dependencies", "client", "sync_client"]


class ProviderDependency:
    """Base of the dependency callables; FastAPI caches one result per request."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = validate_name(name, where=f"httpool.{type(self).__name__}")

    def __repr__(self) -> str:
        return f"httpool.{self._public}({self.name!r})"

    _public = "client"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.name == self.name

    def __hash__(self) -> int:
        return hash((type(self), self.name))


class AsyncClientDependency(ProviderDependency):
    """Hands a route the `httpx.AsyncClient` of one provider."""

    __slots__ = ()

    async def __call__(self, connection: HTTPConnection) -> httpx.AsyncClient:
        # A plain dependency (a yield one costs a context manager and a cancel scope per
        # request): it only hands the request's exit stack to the client, which puts a
        # clean-up on it when a streamed response is actually opened.
        scope = connection.scope
        stack = scope.get("fastapi_inner_astack") or scope.get("fastapi_astack")
        if stack is not None:
            request_streams.set(stack)
        return get_pool(connection).client(self.name)


class SyncClientDependency(ProviderDependency):
    """Hands a `def` route the thread-safe `httpx.Client` of one provider."""

    __slots__ = ()
    _public = "sync_client"

    async def __call__(self, connection: HTTPConnection) -> httpx.Client:
        return get_pool(connection).sync_client(self.name)


def client(name: str) -> Any:
    """A `Depends` that gives a route provider `name`'s `httpx.AsyncClient`.

    ```python
    OpenAI = Annotated[httpx.AsyncClient, httpool.client("openai")]

    @app.post("/chat")
    async def chat(openai: OpenAI) -> dict: ...
    ```
    """
    return Depends(AsyncClientDependency(name))


def sync_client(name: str) -> Any:
    """A `Depends` that gives a `def` route provider `name`'s thread-safe `httpx.Client`."""
    return Depends(SyncClientDependency(name))


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
