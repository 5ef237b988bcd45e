"""A real HTTP upstream on loopback for the tests: uvicorn in a thread, counting connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn


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


def make_app(seen: Upstream) -> Any:
    """An ASGI app that answers like a provider API and records every request."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]
                await send({"type": f"{kind}.complete"})
                if kind == "lifespan.shutdown":
                    return
        host, port = scope["client"]
        seen.clients.add((host, port))
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.requests.append({"path": scope["path"], "method": scope["method"], "headers": headers})
        path = scope["path"]
        if path == "/slow":
            await asyncio.sleep(float(scope["query_string"].decode().partition("=")[2] or 0.2))
        if path == "/status":
            code = int(scope["query_string"].decode().partition("=")[2] or 500)
            await send({"type": "http.response.start", "status": code, "headers": []})
            await send({"type": "http.response.body", "body": b""})
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
        if path == "/redirect":
            target = scope["query_string"].decode().partition("=")[2]
            await send(
                {
                    "type": "http.response.start",
                    "status": 307,
                    "headers": [(b"location", target.encode()), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        payload = json.dumps(
            {
                "path": path,
                "method": scope["method"],
                "headers": headers,
                "body": body.decode(errors="replace"),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_app(
    app: Any,
    *,
    port: int = 0,
    keep_alive: float = 30,
    ssl: dict[str, str] | None = None,
    ws: str = "auto",
    lifespan: str = "auto",
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; yield its URL; stop on exit.

    The one uvicorn-in-a-thread helper of the tests; `ssl` is `{"cert": ..., "key": ...}`
    for https.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    options: dict[str, Any] = (
        {"ssl_certfile": ssl["cert"], "ssl_keyfile": ssl["key"]} if ssl else {}
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan=lifespan,  # type: ignore[arg-type]  # one of uvicorn's names
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]  # a float works as well
        http="h11",
        ws=ws,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    if not server.started:
        sock.close()
        raise RuntimeError("the test server did not start")
    try:
        yield f"{'https' if ssl else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def serve_upstream(*, port: int = 0, keep_alive: int = 30) -> Iterator[Upstream]:
    """Serve the test upstream on 127.0.0.1 in a thread; stop it on exit."""
    seen = Upstream(url="")
    with serve_app(make_app(seen), port=port, keep_alive=keep_alive) as url:
        seen.url = url
        yield seen
