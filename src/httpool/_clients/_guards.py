"""What a provider's clients and transport wrappers add to their library's classes,
httpx's and httpx2's alike.

Mixins placed before the library's class in the bases: the library's method is next in
the method order, so `super()` reaches it. Closing a client from outside (an SDK's
`close()`, `async with`) is ignored while the pool is open (the gate logs it once), new
requests are refused while the pool closes, a streamed response opened in a route is
counted among the route's open streams (closed at its end if left open), and every
request (every redirect hop) passes the provider's gate in the transport wrapper.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

from .._errors import PoolClosedError
from ._gate import Gate, open_streams

__all__ = [
    "AsyncClientGuards",
    "CountedBody",
    "GateTransport",
    "SyncClientGuards",
    "SyncCountedBody",
    "SyncGateTransport",
]

# `super()` below is the library's client, which the mixin does not name; mypy cannot
# see it, hence the `attr-defined` ignores.


class AsyncClientGuards:
    """The guards of a pooled async client."""

    gate: Gate
    label = "client"  # in the repr: "<httpool client 'openai'>"

    @property
    def provider_name(self) -> str:
        """The provider this client belongs to."""
        return self.gate.name

    async def send(self, request: Any, **kwargs: Any) -> Any:
        if self.gate.refusing:  # before the client's own "closed" check
            raise PoolClosedError(self.gate.name, "closing")
        response = await super().send(request, **kwargs)  # type: ignore[misc]
        if kwargs.get("stream"):  # (otherwise the library has read and closed it)
            streams = open_streams.get()
            if streams is not None:  # in a route: closed at its end if left open
                streams.track(response)
        return response

    async def aclose(self) -> None:
        if not self.gate.refuse_close(self):
            await super().aclose()  # type: ignore[misc]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        if not self.gate.refuse_close(self):
            await super().__aexit__(exc_type, exc_value, traceback)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<httpool {self.label} {self.gate.name!r}>"


class SyncClientGuards:
    """The guards of a pooled sync client, for `def` routes."""

    gate: Gate
    label = "sync client"

    def close(self) -> None:
        if not self.gate.refuse_close(self):
            super().close()  # type: ignore[misc]

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        if not self.gate.refuse_close(self):
            super().__exit__(exc_type, exc_value, traceback)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<httpool {self.label} {self.gate.name!r}>"


class CountedBody:
    """A response body that tells its provider's gate when it is closed."""

    def __init__(self, stream: Any, gate: Gate) -> None:
        self._stream, self._gate, self._closed = stream, gate, False

    def __aiter__(self) -> AsyncIterator[bytes]:
        # The engine's body itself: nothing is done per chunk, only at the close.
        return self._stream.__aiter__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._gate.release()
        await self._stream.aclose()


class GateTransport:
    """The provider's transport wrapper: every request (every redirect hop) goes through
    its gate (origins, requests in flight, closing, the provider tag)."""

    counted: type[CountedBody]  # the library's counted body class

    def __init__(self, inner: Any, gate: Gate) -> None:
        self.inner, self.gate = inner, gate

    async def handle_async_request(self, request: Any) -> Any:
        gate = self.gate
        started = gate.admit(request.url, request.headers, request.extensions)
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException:
            gate.release()
            raise
        gate.log(request.method, request.url, response.status_code, started)
        if response.is_closed:  # read already (a mock's response made with content=)
            gate.release()
            return response
        response.stream = self.counted(response.stream, gate)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class SyncCountedBody:
    """A sync response body that tells its provider's gate when it is closed."""

    def __init__(self, stream: Any, gate: Gate) -> None:
        self._stream, self._gate, self._closed = stream, gate, False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._gate.release_sync()
        self._stream.close()


class SyncGateTransport:
    """The sync twin of `GateTransport`: the same gate, its requests counted from the
    threads that send them (`Gate.admit_sync`), so that shutdown drains them too."""

    counted: type[SyncCountedBody]  # the library's counted body class

    def __init__(self, inner: Any, gate: Gate) -> None:
        self.inner, self.gate = inner, gate

    def handle_request(self, request: Any) -> Any:
        gate = self.gate
        gate.admit_sync(request.url, request.headers, request.extensions)
        try:
            response = self.inner.handle_request(request)
        except BaseException:
            gate.release_sync()
            raise
        if response.is_closed:  # read already (a mock's response made with content=)
            gate.release_sync()
            return response
        response.stream = self.counted(response.stream, gate)
        return response

    def close(self) -> None:
        self.inner.close()
