"""The engine's `Request` made from an httpx request, for tests that drive a connection."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from httpool._engine._messages import NO_TIMEOUTS, Request


def engine_request(
    request: httpx.Request, timeouts: Mapping[str, float | None] = NO_TIMEOUTS
) -> Request:
    """`request` as `PoolTransport` hands it to the engine (a body in memory as bytes)."""
    url = request.url
    stream = request.stream
    body: bytes | httpx.AsyncByteStream
    if isinstance(stream, httpx.ByteStream):
        body = b"".join(stream)
    else:
        assert isinstance(stream, httpx.AsyncByteStream)
        body = stream
    scheme = url.raw_scheme
    return Request(
        request.method.encode(),
        scheme,
        url.raw_host,
        url.port or (443 if scheme == b"https" else 80),
        url.raw_path,
        request.headers.raw,
        body,
        timeouts,
    )
