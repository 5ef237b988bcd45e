"""The engine as an httpx2 transport: `Httpx2PoolTransport` (needs `httpool[httpx2]`).

This module imports httpx2; the rest of httpool imports this module only when an httpx2
client or transport is asked for, through `require_httpx2()`, which names the extra
when httpx2 is not installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2

from ._transport import PoolTransport, as_httpx_limits

__all__ = ["Httpx2PoolTransport"]


def _mapped(exc: httpx.HTTPError, request: httpx2.Request) -> httpx2.TransportError:
    """httpx2's exception of the same name as httpx's `exc` (or as its nearest httpx
    base: httpool's `LimitTimeout` becomes a `PoolTimeout`), for `request`."""
    for cls in type(exc).__mro__:
        kind = getattr(httpx2, cls.__name__, None)
        if isinstance(kind, type) and issubclass(kind, httpx2.TransportError):
            return kind(str(exc), request=request)
    return httpx2.TransportError(str(exc), request=request)


class _RequestBody(httpx.AsyncByteStream):
    """A streamed httpx2 request body, as the engine reads bodies."""

    def __init__(self, stream: httpx2.AsyncByteStream | Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class _ResponseBody(httpx2.AsyncByteStream):
    """The engine's response body as httpx2 reads it, with errors as httpx2's."""

    def __init__(self, stream: httpx.AsyncByteStream, request: httpx2.Request) -> None:
        self._stream, self._request = stream, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx.HTTPError as exc:
            raise _mapped(exc, self._request) from exc

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except httpx.HTTPError as exc:
            raise _mapped(exc, self._request) from exc


class Httpx2PoolTransport(httpx2.AsyncBaseTransport):
    """httpool's engine as an `httpx2.AsyncBaseTransport`, the twin of `PoolTransport`.

    ```python
    client = httpx2.AsyncClient(transport=httpool.Httpx2PoolTransport(http2=True))
    ```

    It takes the `PoolTransport` arguments (`limits` may be httpx2's `Limits`), or
    `engine=`, a `PoolTransport` to share: a provider's httpx and httpx2 clients share
    one engine (one scheduler, one connection budget, one set of stats). Errors are
    httpx2's exceptions of the same names as httpx's.
    """

    def __init__(self, engine: httpx.AsyncBaseTransport | None = None, **options: Any) -> None:
        limits = options.get("limits")
        if limits is not None and not isinstance(limits, httpx.Limits):
            options["limits"] = as_httpx_limits(limits)
        self.engine = engine if engine is not None else PoolTransport(**options)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send `request` on the engine and return the streaming response."""
        body = request.stream
        stream: httpx.AsyncByteStream | httpx.ByteStream
        if isinstance(body, httpx2.ByteStream):  # in memory: the engine may send it again
            stream = httpx.ByteStream(b"".join(body))
        else:
            stream = _RequestBody(body)
        sent = httpx.Request(
            request.method,
            httpx.URL(str(request.url)),
            headers=request.headers.raw,
            stream=stream,
            extensions=request.extensions,
        )
        try:
            response = await self.engine.handle_async_request(sent)
        except httpx.HTTPError as exc:
            raise _mapped(exc, request) from exc
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers.raw,
            stream=_ResponseBody(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close the engine (all its connections); closing twice is fine."""
        await self.engine.aclose()

    @property
    def proxy_labels(self) -> list[str]:
        """The engine's proxies, masked."""
        return list(getattr(self.engine, "proxy_labels", None) or [])

    def stats(self) -> dict[str, Any]:
        """The engine's counters (see `PoolTransport.stats`)."""
        stats = getattr(self.engine, "stats", None)
        return stats() if callable(stats) else {}
