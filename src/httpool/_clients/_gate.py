"""What every client of one provider shares, whatever its library: the `Gate`.

A provider's clients (httpx and httpx2, async and sync) send through a transport
wrapper that asks the provider's gate to admit each request, and to let it go when its
response is closed. The gate keeps the provider's credentials at their origins, counts
the requests in flight (for draining at shutdown), refuses new requests while the pool
closes, and tags each request with the provider's name. The wrappers see every redirect
hop, so a hop that leaves the provider's origins goes without its credentials.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AsyncExitStack
from contextvars import ContextVar, Token
from typing import Any, Protocol

import anyio

from .._config import Provider, origin_of
from .._errors import OriginNotAllowedError, PoolClosedError

__all__ = ["TAG", "Gate", "OpenStreams", "open_streams"]

logger = logging.getLogger("httpool")

#: The request extension that names the provider; a request that already has it is a
#: redirect hop (or an auth flow's next request) of a request the gate admitted.
TAG = "httpool.provider"


class _URL(Protocol):
    """The part of `httpx.URL` and `httpx2.URL` the gate reads."""

    @property
    def scheme(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def path(self) -> str: ...


def _key(url: _URL) -> tuple[str, str, int | None]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, port)


class _Response(Protocol):
    """The part of a streamed `httpx.Response` / `httpx2.Response` a route's clean-up uses."""

    @property
    def is_closed(self) -> bool: ...
    async def aclose(self) -> None: ...


#: A route's list of streamed responses is pruned of closed ones when it reaches this.
PRUNE_AT = 32


class OpenStreams:
    """The streamed responses a route opened; those still open are closed at its end.

    Only streamed responses are counted (`send(request, stream=True)`, `client.stream()`):
    the client library reads and closes every other response before the route sees it.
    A route ends in one of two ways:

    - `async with OpenStreams():` (the `yield` dependency): on exit `open_streams` is
      reset to what it was and what the route left open is closed;
    - `OpenStreams(stack).enter()` pushed onto FastAPI's request exit stack
      (`AsyncExitStack.push`): its exit only resets `open_streams`, and the first
      streamed response of the route pushes the closing (`close_all`) onto that stack,
      which runs it first. A route that streams nothing awaits nothing at its end.
    """

    __slots__ = ("_stack", "responses", "token")

    def __init__(self, stack: AsyncExitStack | None = None) -> None:
        self.responses: list[_Response] = []
        self.token: Token[OpenStreams | None] | None = None
        self._stack = stack

    def enter(self) -> OpenStreams:
        """Make these the open streams of the code that runs from here (`open_streams`)."""
        self.token = open_streams.set(self)
        return self

    def track(self, response: _Response) -> None:
        """Count a streamed response the route opened (closed at its end if still open)."""
        responses = self.responses
        if self._stack is not None:
            self._stack.push_async_callback(self.close_all)
            self._stack = None  # pushed once
        elif len(responses) >= PRUNE_AT:  # a long route: forget what it has closed
            responses[:] = [r for r in responses if not r.is_closed]
        responses.append(response)

    def _reset(self) -> None:
        token, self.token = self.token, None
        if token is not None:
            try:  # noqa: SIM105 (cheaper than contextlib.suppress, per request)
                open_streams.reset(token)
            except ValueError:
                pass  # the exit ran in another context: nothing to reset there

    def __enter__(self) -> OpenStreams:
        return self.enter()

    def __exit__(self, *exc_info: object) -> None:
        """The route's end on FastAPI's request stack: `open_streams` as it was before
        `enter` (what is left open is closed by `close_all`, pushed after it)."""
        self._reset()

    async def __aenter__(self) -> OpenStreams:
        return self.enter()

    async def __aexit__(self, *exc_info: object) -> None:
        """The route's end: `open_streams` as it was before `enter`, and what the route
        left open closed."""
        self._reset()
        if self.responses:
            await self.close_all()

    async def close_all(self) -> None:
        """Close what the route left open."""
        responses, self.responses = self.responses, []
        with anyio.CancelScope(shield=True):
            for response in responses:
                if response.is_closed:
                    continue
                try:
                    await response.aclose()
                except Exception as exc:  # noqa: BLE001 (the others are closed all the same)
                    logger.warning(
                        "httpool: closing a response the route left open failed (%s)",
                        type(exc).__name__,  # (the type only: a message may hold a URL)
                    )


#: The open streams of the route being run, set (and reset) by httpool's dependency.
open_streams: ContextVar[OpenStreams | None] = ContextVar("httpool_open_streams", default=None)


class Gate:
    """The origin guard, the count of requests in flight and the closing switch of a provider.

    Attributes:
        in_flight: async requests admitted whose response is not closed yet.
        sync_in_flight: the same for sync clients' requests (see `busy` for both).
        refusing: new requests fail with `PoolClosedError` (set while the pool closes).
        owned: the pool owns the clients: closing one from outside is refused (logged).
    """

    __slots__ = (
        "_allowed", "_header_names", "_shown", "_sync_lock", "in_flight", "name", "owned",
        "refusing", "sync_in_flight",
    )  # fmt: skip

    def __init__(self, provider: Provider) -> None:
        import httpx

        self.name = provider.name
        origins = ([provider.origin] if provider.origin else []) + list(provider.allowed_origins)
        self._shown = tuple(origins)
        self._allowed = frozenset(_key(httpx.URL(o)) for o in origins)
        self._header_names = frozenset(h.lower() for h in provider.headers) | {"authorization"}
        self.in_flight = 0  # async requests: counted on the event loop's thread only
        self.sync_in_flight = 0  # sync clients' requests, from their threads
        self._sync_lock = threading.Lock()
        self.refusing = False
        self.owned = False

    def admit(self, url: _URL, headers: Any, extensions: dict[str, Any]) -> float:
        """Let a request through (`check`) and count it in flight; returns a start time
        for the debug log. On the event loop's thread only."""
        self.check(url, headers, extensions)
        self.in_flight += 1
        return time.perf_counter() if logger.isEnabledFor(logging.DEBUG) else 0.0

    def check(self, url: _URL, headers: Any, extensions: dict[str, Any]) -> None:
        """Let a request through, or raise.

        The first hop must go to the provider's origins (`OriginNotAllowedError`);
        a later hop that leaves them loses the provider's headers and `Authorization`.
        While the pool closes, new requests are refused (`PoolClosedError`); the later
        hops of a request admitted before (a redirect, an auth flow's next request) go
        on, so that the drain lets it finish.
        """
        hop = TAG in extensions
        if self.refusing and not hop:
            raise PoolClosedError(self.name, "closing")
        if self._allowed and _key(url) not in self._allowed:
            if not hop:
                raise OriginNotAllowedError(self.name, origin_of(url), self._shown)
            for name in self._header_names:
                headers.pop(name, None)
        extensions[TAG] = self.name

    def release(self) -> None:
        """A request admitted is done (its response closed, or it failed)."""
        self.in_flight -= 1

    def admit_sync(self, url: _URL, headers: Any, extensions: dict[str, Any]) -> None:
        """`admit` for a sync client's request, from the thread that sends it: counted
        apart (under a lock), as the event loop's thread counts the others unlocked."""
        self.check(url, headers, extensions)
        with self._sync_lock:
            self.sync_in_flight += 1

    def release_sync(self) -> None:
        """A sync client's request admitted is done (from any thread)."""
        with self._sync_lock:
            self.sync_in_flight -= 1

    @property
    def busy(self) -> int:
        """Requests in flight, async and sync."""
        return self.in_flight + self.sync_in_flight

    def log(self, method: str, url: _URL, status: int, started: float) -> None:
        """One DEBUG record per request (hop), with structured fields and no URL query."""
        if not started:
            return
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        origin = origin_of(url)
        logger.debug(
            "httpool %s %s %s%s -> %d in %.1f ms",
            self.name,
            method,
            origin,
            url.path,
            status,
            duration_ms,
            extra={
                "provider": self.name,
                "origin": origin,
                "method": method,
                "status": status,
                "duration_ms": duration_ms,
            },
        )

    def refuse_close(self, client: object) -> bool:
        """Whether closing `client` from outside must be refused (logged once per client)."""
        if not self.owned:
            return False
        if not getattr(client, "_httpool_warned", False):
            object.__setattr__(client, "_httpool_warned", True)
            logger.warning(
                "httpool client %r belongs to the pool, which closes it at shutdown; "
                "closing it elsewhere (an SDK's close(), `async with` on it) is ignored",
                self.name,
                extra={"provider": self.name},
            )
        return True
