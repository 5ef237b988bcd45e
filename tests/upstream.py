"""A real HTTP upstream on loopback for the tests: uvicorn in a thread, counting connections.

One server serves the whole session (`upstream_server`, the `upstream` fixture of
`tests/conftest.py`); each test gets a fresh `Upstream` record of what it saw, so
counts start from zero without a new server. `serve_upstream()` starts a server of a
test's own (a given port, a short keep-alive, TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .servers import read_body, send_response, serve_app

# serve_app is named here too for the policy tests, which import it from this module.
__all__ = [
    "Upstream",
    "UpstreamServer",
    "make_app",
    "serve_app",
    "serve_upstream",
    "upstream_server",
]


@dataclass
class Upstream:
    """What the test upstream saw: its URL, the connections and requests it served."""

    url: str
    clients: set[tuple[str, int]] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    streams_open: int = 0

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (distinct client ports)."""
        return len(self.clients)


class UpstreamServer:
    """A running upstream: its URL, and the record that requests are counted in now."""

    def __init__(self) -> None:
        self.url = ""
        self.current = Upstream(url="")

    def fresh(self) -> Upstream:
        """Count from now on in a new record (a test's own), and return it."""
        self.current = Upstream(url=self.url)
        return self.current


def make_app(server: UpstreamServer) -> Any:
    """An ASGI app that answers like a provider API and records every request in the
    server's current record (a stream counts in the record it started in).

    Paths: `/slow?d=` (or `?delay=`) answers after a pause, `/status?code=` with that
    status, `/stream?n=&delay=` server-sent events, `/redirect?to=` a 307 (after 0.3 s from
    `/redirect-slow?to=`), `/length` the request body's length; any other path echoes the
    request as JSON.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]
                await send({"type": f"{kind}.complete"})
                if kind == "lifespan.shutdown":
                    return
        seen = server.current
        host, port = scope["client"]
        seen.clients.add((host, port))
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        body = await read_body(receive)
        seen.requests.append({"path": scope["path"], "method": scope["method"], "headers": headers})
        path = scope["path"]
        if path == "/slow":
            await asyncio.sleep(float(scope["query_string"].decode().partition("=")[2] or 0.2))
        if path == "/status":
            code = int(scope["query_string"].decode().partition("=")[2] or 500)
            await send_response(send, b"", status=code)
            return
        if path == "/length":
            await send_response(send, str(len(body)).encode())
            return
        if path == "/stream":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            query = dict(p.split("=") for p in scope["query_string"].decode().split("&") if p)
            count, delay = int(query.get("n", 5)), float(query.get("delay", 0.01))
            seen.streams_open += 1

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass

            watcher = asyncio.ensure_future(watch())
            try:
                for i in range(count):
                    if watcher.done():  # the client went away: stop producing
                        break
                    chunk = f"data: {json.dumps({'n': i})}\n\n".encode()
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await asyncio.sleep(delay)
                await send({"type": "http.response.body", "body": b""})
            finally:
                watcher.cancel()
                seen.streams_open -= 1
            return
        if path in ("/redirect", "/redirect-slow"):
            if path == "/redirect-slow":
                await asyncio.sleep(0.3)
            target = scope["query_string"].decode().partition("=")[2]
            await send_response(send, b"", status=307, headers=[(b"location", target.encode())])
            return
        payload = json.dumps(
            {
                "path": path,
                "method": scope["method"],
                "headers": headers,
                "body": body.decode(errors="replace"),
            }
        ).encode()
        await send_response(send, payload, headers=[(b"content-type", b"application/json")])

    return app


@contextlib.contextmanager
def upstream_server(
    *, port: int = 0, keep_alive: float = 30, ssl: dict[str, str] | None = None
) -> Iterator[UpstreamServer]:
    """Serve the test upstream on 127.0.0.1 in a thread; stop it on exit."""
    server = UpstreamServer()
    with serve_app(make_app(server), port=port, keep_alive=keep_alive, ssl=ssl) as url:
        server.url = url
        yield server


@contextlib.contextmanager
def serve_upstream(
    *, port: int = 0, keep_alive: float = 30, ssl: dict[str, str] | None = None
) -> Iterator[Upstream]:
    """A test upstream of the caller's own (a given port, keep-alive or TLS); its record."""
    with upstream_server(port=port, keep_alive=keep_alive, ssl=ssl) as server:
        yield server.fresh()
