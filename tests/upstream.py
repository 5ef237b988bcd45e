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

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (distinct client ports)."""
        return len(self.clients)


def make_app(seen: Upstream) -> Any:
    """An ASGI app that answers like a provider API and records every request."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            await send({"type": "lifespan.shutdown.complete"})
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
        if path == "/stream":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            for i in range(5):
                chunk = f"data: {json.dumps({'n': i})}\n\n".encode()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": b""})
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


@contextlib.contextmanager
def serve_upstream(*, keep_alive: int = 30) -> Iterator[Upstream]:
    """Serve the test upstream on 127.0.0.1 in a thread; stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    seen = Upstream(url=f"http://127.0.0.1:{port}")
    config = uvicorn.Config(
        make_app(seen),
        log_level="warning",
        lifespan="off",
        timeout_keep_alive=keep_alive,
        http="h11",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    try:
        yield seen
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
