"""The ASGI app granian serves over HTTP/2 in the transport tests (run in a subprocess)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

ports: set[int] = set()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/` answers, `/slow?d=` waits first, `/bytes?n=` sends n bytes, `/echo` the request
    body's length, `/ports` lists the client ports seen so far."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    query = parse_qs(scope["query_string"].decode())
    if scope["path"] == "/echo":
        body = str(size).encode()
    elif scope["path"] == "/ports":
        body = json.dumps(sorted(ports)).encode()
    elif scope["path"] == "/bytes":
        body = b"b" * int(query.get("n", ["10"])[0])
    else:
        ports.add(scope["client"][1])
        if scope["path"] == "/slow":
            await asyncio.sleep(float(query.get("d", ["0.2"])[0]))
        body = json.dumps({"http_version": scope["http_version"]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
