"""A fast raw asyncio HTTP/1.1 upstream that answers like an embeddings API and counts.

Run as its own process: ``python -m bench.upstream --port 9001 [--tls CHAIN KEY]``.

Every path answers a small JSON body (about 200 bytes; headers only to HEAD).
``?ms=N`` delays the answer by N milliseconds (the provider's compute time).
``GET /__stats`` answers ``{"connections": n, "requests": m}``: the connections that
carried at least one ordinary request, and the ordinary requests, since start. Stats
requests are not counted, so the bench reads them between runs without changing them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httptools

__all__ = ["BODY", "main", "serve"]

BODY = json.dumps(
    {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": 0,
                "embedding": [0.0123, -0.0456, 0.0789, 0.0012, -0.0345, 0.0678, -0.0901, 0.0234],
            }
        ],
        "model": "bench-embed-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    },
    separators=(",", ":"),
).encode()


def _response(body: bytes, *, close: bool) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


class Counters:
    """What the upstream served since it started."""

    __slots__ = ("connections", "requests")

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0


class _Connection(asyncio.Protocol):
    """One client connection: parse requests with httptools, answer each in order."""

    def __init__(self, counters: Counters, loop: asyncio.AbstractEventLoop) -> None:
        self._counters = counters
        self._loop = loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._counted = False
        self._last_due = 0.0  # answers leave in request order, even when delayed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_message_complete(self) -> None:
        url, self._url = self._url, b""
        close = not self._parser.should_keep_alive()
        parts = urlsplit(url.decode("latin-1"))
        if parts.path == "/__stats":
            body = json.dumps(
                {"connections": self._counters.connections, "requests": self._counters.requests}
            ).encode()
            self._send(_response(body, close=close), close)
            return
        self._counters.requests += 1
        if not self._counted:
            self._counted = True
            self._counters.connections += 1
        delay_ms = float(parse_qs(parts.query).get("ms", ["0"])[0])
        payload = _response(BODY, close=close)
        if self._parser.get_method() == b"HEAD":  # the same headers, no body
            payload = payload[: len(payload) - len(BODY)]
        now = self._loop.time()
        due = max(now + delay_ms / 1000, self._last_due)
        self._last_due = due
        if due <= now:
            self._send(payload, close)
        else:
            self._loop.call_at(due, self._send, payload, close)

    def _send(self, payload: bytes, close: bool) -> None:
        if self._transport is None:
            return
        self._transport.write(payload)
        if close:
            self._transport.close()


async def serve(port: int, *, tls: tuple[str, str] | None = None) -> None:
    """Serve on 127.0.0.1:`port` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    counters = Counters()
    ssl_ctx: Any = None
    if tls is not None:
        from .certs import server_context

        ssl_ctx = server_context(*tls, alpn=["http/1.1"])
    server = await loop.create_server(
        lambda: _Connection(counters, loop), "127.0.0.1", port, ssl=ssl_ctx, backlog=2048
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", nargs=2, metavar=("CHAIN", "KEY"))
    args = parser.parse_args()
    tls = (args.tls[0], args.tls[1]) if args.tls else None
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, tls=tls))
    else:
        uvloop.run(serve(args.port, tls=tls))


if __name__ == "__main__":
    main()
