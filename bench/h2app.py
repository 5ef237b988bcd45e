"""The ASGI app that granian serves as the HTTP/2-over-TLS upstream.

It answers the same JSON body as `bench.upstream`, honours ``?ms=N``, and counts
connections as distinct client ``(host, port)`` pairs (one HTTP/2 connection carries
many streams from one port). ``GET /__stats`` answers ``{"connections", "requests"}``.
Run with one worker so that the counters are the whole server's.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .upstream import BODY

__all__ = ["app"]

_seen: set[tuple[str, int]] = set()
_requests = [0]

_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer like an embeddings API; see the module docstring."""
    if scope["type"] == "lifespan":
        while True:  # bounded by the server: it ends with lifespan.shutdown
            event = (await receive())["type"]
            if event == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/__stats":
        body = json.dumps({"connections": len(_seen), "requests": _requests[0]}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    _requests[0] += 1
    client = scope.get("client")
    if client:
        _seen.add((client[0], client[1]))
    query = scope.get("query_string", b"").decode()
    if query.startswith("ms="):
        await asyncio.sleep(float(query[3:]) / 1000)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})
