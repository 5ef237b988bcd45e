"""The engine as an httpx2 transport: `Httpx2PoolTransport` (needs `httpool[httpx2]`).

It turns each `httpx2.Request` into the engine's `Request` (the URL's raw parts and the
raw header list, as the httpx adapter does), hands it to the `Engine` it shares with a
`PoolTransport`, and turns the answer into an `httpx2.Response` and the engine's
exceptions into httpx2's of the same names. The `trace` extension gets httpcore2's
`Request` in its `info`, as on httpx2's own transport.

This module imports httpx2; the rest of httpool imports this module only when an httpx2
client or transport is asked for, through `require_httpx2()`, which names the extra
when httpx2 is not installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any

import httpcore2
import httpx
import httpx2

from ._core import PooledBody
from ._errors import EngineError
from ._messages import Trace
from ._transport import PoolTransport, as_httpx_limits, engine_request, library_error

__all__ = ["Httpx2PoolTransport"]


def _mapped(exc: Exception, request: httpx2.Request) -> httpx2.TransportError:
    """httpx2's exception of the same name as `exc` (the engine's or httpx's) or as its
    nearest base of such a name, for `request`."""
    mapped: httpx2.TransportError | None = library_error(exc, httpx2, request)
    return mapped or httpx2.TransportError(str(exc), request=request)


class _Body(PooledBody, httpx2.AsyncByteStream):
    """The engine's response body as httpx2 reads it, with httpx2's exceptions."""

    @staticmethod
    def mapped(exc: Exception, request: Any) -> Exception:
        if isinstance(exc, EngineError):
            return _mapped(exc, request)
        return exc

    library_response = httpx2.Response


def _core_request(request: httpx2.Request) -> httpcore2.Request:
    """The httpcore2 form of `request`, for the `trace` extension's `info`."""
    url = request.url
    port = url.port or (443 if url.raw_scheme == b"https" else 80)
    return httpcore2.Request(
        method=request.method,
        url=httpcore2.URL(scheme=url.raw_scheme, host=url.raw_host, port=port, target=url.raw_path),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


def _httpcore2_trace(trace: Any, request: httpx2.Request) -> Trace:
    """The engine's trace hook for httpx2's `trace` extension (httpcore2's `request`)."""

    def hook(name: str, info: dict[str, Any]) -> Any:
        if "request" in info:
            info = {**info, "request": _core_request(request)}
        return trace(name, info)

    return hook


class _RequestBody(httpx.AsyncByteStream):
    """A streamed httpx2 request body, as httpx reads bodies (for a wrapped transport)."""

    def __init__(self, stream: httpx2.AsyncByteStream | Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class _WrappedBody(httpx2.AsyncByteStream):
    """A wrapped httpx transport's response body as httpx2 reads it, with errors as
    httpx2's."""

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
        # On a `PoolTransport`, requests go straight to its engine; any other httpx
        # transport (a policy wrapper around one) is sent httpx requests.
        self._core = self.engine.engine if isinstance(self.engine, PoolTransport) else None

    def handle_async_request(self, request: httpx2.Request) -> Coroutine[Any, Any, httpx2.Response]:
        """Send `request` on the engine and return the streaming response.

        (On a `PoolTransport`'s engine, the engine's coroutine is returned as this
        method's own: awaited, it gives the `httpx2.Response`, and raises httpx2's
        exceptions.)
        """
        core = self._core
        if core is None:
            return self._through_httpx(request)
        trace = request.extensions.get("trace")
        sent = engine_request(
            request,
            httpx2.ByteStream,
            httpx2.RequestNotRead,
            None if trace is None else _httpcore2_trace(trace, request),
        )
        return core.send(sent, _Body, request)

    async def _through_httpx(self, request: httpx2.Request) -> httpx2.Response:
        """Send `request` through the wrapped httpx transport, as an httpx request."""
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
            stream=_WrappedBody(response.stream, request),
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
