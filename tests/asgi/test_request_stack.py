"""The route dependency's two forms: on FastAPI's request exit stack (the speed-up, the
one place httpool reads a private detail of FastAPI) and with `yield` (the public way).

The first test is the one that fails when FastAPI changes what the speed-up relies on:
an `AsyncExitStack` under `fastapi_inner_astack`, closed after the response has been
sent, in the request's own context, also when the route raises. The others show both
forms close what a route leaves open and reset their context variable, on asyncio and
trio.
"""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from contextvars import ContextVar
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

import httpool
from httpool._asgi import _dependencies
from httpool._asgi._dependencies import StackClientDependency, YieldClientDependency
from httpool._asgi._request_stack import FASTAPI_CHECKED, request_stack, stack_dependency_enabled
from httpool._clients import open_streams

from ..upstream import Upstream
from .conftest import Backend

marker: ContextVar[str] = ContextVar("marker", default="unset")


def test_fastapi_closes_its_request_stack_after_the_response_in_the_request_context(
    anyio_backend: Backend,
) -> None:
    """What the speed-up relies on, checked on the installed FastAPI: a plain dependency
    finds an `AsyncExitStack` in the scope; what it pushes there runs after the last
    body chunk was sent, sees the context the dependency set, and runs when the route
    raises too."""
    events: list[str] = []

    async def dependency(request: Request) -> None:
        stack = request_stack(request.scope)
        assert isinstance(stack, AsyncExitStack)
        token = marker.set("set by the dependency")

        async def finish() -> None:
            events.append(f"stack closed, marker {marker.get()!r}")
            marker.reset(token)  # raises ValueError in another context

        stack.push_async_callback(finish)

    app = FastAPI(dependencies=[Depends(dependency)])

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                events.append(f"chunk {i}")
                yield b"x"

        return StreamingResponse(chunks())

    @app.get("/fails")
    async def fails() -> None:
        raise RuntimeError("the route failed")

    with TestClient(app, raise_server_exceptions=False, backend=anyio_backend) as client:
        assert client.get("/stream").content == b"xxx"
        assert events == [
            "chunk 0",
            "chunk 1",
            "chunk 2",
            "stack closed, marker 'set by the dependency'",
        ]
        events.clear()
        assert client.get("/fails").status_code == 500
        assert events == ["stack closed, marker 'set by the dependency'"]


def test_the_stack_form_is_used_on_a_checked_fastapi_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the installed FastAPI (0.121 or later) `httpool.client()` is the stack form;
    `HTTPOOL_PUBLIC_DEPENDENCY=1` makes it the `yield` form."""
    import fastapi

    major, minor = (int(part) for part in fastapi.__version__.split(".")[:2])
    assert (major, minor) >= FASTAPI_CHECKED
    assert stack_dependency_enabled()
    assert isinstance(httpool.client("up").dependency, StackClientDependency)
    monkeypatch.setenv("HTTPOOL_PUBLIC_DEPENDENCY", "1")
    assert isinstance(httpool.client("up").dependency, YieldClientDependency)


@pytest.mark.parametrize("form", [StackClientDependency, YieldClientDependency])
def test_each_form_closes_what_a_route_left_open(
    upstream: Upstream, anyio_backend: Backend, form: type[Any]
) -> None:
    """A route that opens a stream and returns, one that raises, and one that relays the
    stream in its response: each upstream stream is closed once the response is done,
    and the route's context variable is reset."""
    Up = Annotated[httpx.AsyncClient, Depends(form("up"))]  # noqa: N806
    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream.url)))
    seen: list[object] = []

    @app.get("/left-open")
    async def left_open(up: Up) -> dict[str, bool]:
        seen.append(open_streams.get())
        await up.send(up.build_request("GET", "/stream?n=3"), stream=True)
        return {"ok": True}

    @app.get("/raises")
    async def raises(up: Up) -> None:
        await up.send(up.build_request("GET", "/stream?n=3"), stream=True)
        raise RuntimeError("the route failed before closing the stream")

    @app.get("/relay")
    async def relay(up: Up) -> StreamingResponse:
        response = await up.send(up.build_request("GET", "/stream?n=3"), stream=True)
        return StreamingResponse(response.aiter_raw())  # never closed by the route

    def in_flight() -> int:
        return int(httpool.get_pool(app).stats()["up"]["requests_in_flight"])

    with TestClient(app, raise_server_exceptions=False, backend=anyio_backend) as client:
        assert client.get("/left-open").json() == {"ok": True}
        assert seen[0] is not None  # the route saw its own open streams
        assert in_flight() == 0
        for _ in range(3):
            assert client.get("/raises").status_code == 500
        assert in_flight() == 0
        relayed = client.get("/relay")
        assert relayed.status_code == 200
        assert relayed.text.count("data:") == 3  # the whole stream went out first
        assert in_flight() == 0
    assert open_streams.get() is None


def test_a_request_without_the_stack_gets_its_client_and_a_warning_once(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A FastAPI that no longer keeps the stack where httpool reads it: the route still
    gets its client, and httpool says once what is lost and how to get it back."""
    monkeypatch.setattr(_dependencies, "request_stack", lambda scope: None)
    monkeypatch.setattr(StackClientDependency, "_warned", False)
    Up = Annotated[httpx.AsyncClient, Depends(StackClientDependency("up"))]  # noqa: N806
    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream.url)))

    @app.get("/ping")
    async def ping(up: Up) -> Any:
        return (await up.get("/ping")).json()

    with caplog.at_level(logging.WARNING, logger="httpool"), TestClient(app) as client:
        for _ in range(2):
            assert client.get("/ping").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if "exit stack" in r.getMessage()]
    assert len(warnings) == 1
    assert "HTTPOOL_PUBLIC_DEPENDENCY=1" in warnings[0]
