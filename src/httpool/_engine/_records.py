"""The pool's records: an origin's connections and waiters, a connection slot, a waiter.

Plain slotted classes that `_room` and `_connections` keep their books in, and the
protocol a pooled connection (httpool's HTTP/1.1 or HTTP/2 one) fulfils.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ._http2 import HTTP2Connection
from ._messages import Request

__all__ = [
    "Conn",
    "Inner",
    "Key",
    "Opener",
    "Origin",
    "TransportClosedError",
    "Waiter",
    "h2_capacity",
]

H2_MAX_STREAMS = 100  # httpool's own cap on the streams of one HTTP/2 connection
Key = tuple[Any, ...]  # (scheme, host, port), and the proxy (`_proxy.ProxyConf`) if any


class Inner(Protocol):
    """What the pool needs of a connection (httpool's HTTP/1.1 and HTTP/2 ones)."""

    def is_available(self) -> bool: ...
    def has_expired(self) -> bool: ...
    def is_idle(self) -> bool: ...
    def is_closed(self) -> bool: ...
    async def aclose(self) -> None: ...


Opener = Callable[["Conn", Request], Awaitable[tuple[Inner, bool]]]


class TransportClosedError(RuntimeError):
    """The transport is closed: requests (and those that were waiting) fail with this."""

    def __init__(self) -> None:
        super().__init__(
            "the httpool transport is closed; its client was shut down with its pool. "
            "Get a live client from the running app's pool (httpool.client(name))."
        )


class Origin:
    """One origin's connections and waiters."""

    __slots__ = (
        "h1_only", "h2_cap", "host", "idle", "idle_n", "key", "label", "open",
        "pending_h2", "port", "ready", "scheme", "sharing", "slots", "via", "waiters",
        "waiting",
    )  # fmt: skip

    def __init__(self, key: Key) -> None:
        self.key = key
        self.scheme: bytes = key[0]
        self.host: bytes = key[1]
        self.port: int = key[2]
        self.label = f"{key[0].decode()}://{key[1].decode()}:{key[2]}"
        self.via: Any = key[3] if len(key) > 3 else None  # the proxy, pooled apart
        if self.via is not None:
            self.label += f" via {self.via.label}"
        self.idle: deque[Conn] = deque()  # idle HTTP/1.1 connections, newest on the right
        self.ready: dict[Conn, None] = {}  # HTTP/2 connections with a free stream
        self.waiters: OrderedDict[Waiter, None] = OrderedDict()  # all but `fresh` ones
        self.slots = 0  # connections, connecting or open
        self.open = 0  # established connections
        self.idle_n = 0  # of those, idle
        self.waiting = 0  # waiting requests, `fresh` ones included
        self.pending_h2 = 0  # connecting connections that may turn out HTTP/2
        self.sharing = 0  # waiters not queued for room: they wait to share those
        self.h1_only = False  # ALPN said http/1.1 before: do not wait to share
        self.h2_cap = H2_MAX_STREAMS  # the server's stream limit, once known


class Conn:
    """A slot in the pool: a connection being opened, or an open one."""

    __slots__ = (
        "born", "closed", "done", "h2", "idle_at", "inner", "maybe_h2", "origin", "stream",
        "streams", "used",
    )  # fmt: skip

    def __init__(self, origin: Origin, maybe_h2: bool) -> None:
        self.origin = origin
        self.inner: Inner | None = None
        self.stream: Any = None  # its network stream, once open
        self.maybe_h2 = maybe_h2
        self.h2 = False
        self.closed = False
        self.streams = 1  # requests using it; the one that opens it counts
        self.used = 1  # requests handed it so far
        self.done = 0  # requests given back (`Scheduler.release`) so far
        self.born = time.monotonic()
        self.idle_at = 0.0


class Waiter:
    """A request waiting for a connection or for room to open one."""

    __slots__ = ("fresh", "future", "origin", "queued")

    def __init__(self, origin: Origin, future: asyncio.Future[Conn], fresh: bool) -> None:
        self.origin = origin
        self.future = future
        self.fresh = fresh  # wants a new connection, not an idle one
        self.queued = False  # in the global queue for room (else sharing a pending one)


def h2_capacity(conn: Conn) -> int:
    """Streams an HTTP/2 connection takes now: the server's limit (the origin's last one
    until its SETTINGS arrive), capped by httpool's own and by the streams per connection
    the server was seen to process before a GOAWAY."""
    inner = conn.inner
    origin = conn.origin
    if not isinstance(inner, HTTP2Connection):
        return origin.h2_cap
    limit = inner.max_streams
    if limit is not None:
        origin.h2_cap = max(1, min(limit, H2_MAX_STREAMS))
    budget = inner.stream_budget
    if budget is None:
        return origin.h2_cap
    origin.h2_cap = min(origin.h2_cap, budget)
    return min(origin.h2_cap, conn.streams + max(0, budget - conn.used))
