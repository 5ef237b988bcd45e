"""Room in the pool: the connection limit, the queue for room, idle connections, closing.

`Room` keeps the global books: connections counted against `max_connections` (opening,
open, or closing), the FIFO of requests waiting for room, the LRU of idle connections
(the oldest is closed to make room or when its keep-alive runs out), and the closing of
sockets in small background tasks. `Pool` (in `_connections`) hands out connections on
top of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from ._slots import Conn, Inner, Key, Opener, Origin, TransportClosedError, Waiter

__all__ = ["Room"]

logger = logging.getLogger("httpool.transport")


class Room:
    """The pool's global books; `Pool` adds handing out and giving back."""

    def __init__(
        self,
        *,
        max_connections: int | None,
        max_keepalive: int | None,
        keepalive_expiry: float | None,
        max_lifetime: float | None,
        maybe_h2: Callable[[bytes], bool],
        opener: Opener,
    ) -> None:
        self.max_connections = max_connections if max_connections is not None else 1 << 62
        self.max_keepalive = max_keepalive if max_keepalive is not None else 1 << 62
        self.keepalive_expiry = keepalive_expiry
        self.max_lifetime = max_lifetime
        self._maybe_h2 = maybe_h2
        self._opener = opener
        self.origins: dict[Key, Origin] = {}
        self.conns: set[Conn] = set()
        self.lru: OrderedDict[Conn, None] = OrderedDict()  # idle, oldest first
        self.queue: OrderedDict[Waiter, None] = OrderedDict()  # waiting for room
        self.closing: set[asyncio.Task[None]] = set()
        self.closed = False
        self.total = 0  # room taken: connections connecting, open, or closing
        self.connecting = self.closing_n = self.waiting = self.opened = self.closed_count = 0

    def _room(self, origin: Origin) -> Conn | None:
        """A new slot for `origin`, or None at the limit."""
        if self.total >= self.max_connections:
            return None
        self.origins.setdefault(origin.key, origin)  # `_take` may have just forgotten it
        maybe_h2 = not origin.h1_only and self._maybe_h2(origin.key[0])
        conn = Conn(origin, maybe_h2)
        self.conns.add(conn)
        origin.slots += 1
        self.total += 1
        self.connecting += 1
        if maybe_h2:
            origin.pending_h2 += 1
        return conn

    def _unlink(self, waiter: Waiter) -> None:
        """Take `waiter` out of its origin's FIFO and the global queue (idempotent)."""
        origin = waiter.origin
        if waiter in origin.waiters:
            del origin.waiters[waiter]
            if not waiter.queued:
                origin.sharing -= 1
        if waiter.queued:
            waiter.queued = False
            self.queue.pop(waiter, None)

    def _fill(self) -> None:
        """Give free room (or room made by closing idle connections) to queued waiters."""
        queue = self.queue
        while queue:
            if self.total >= self.max_connections:
                if self.closing_n >= len(queue) or not self.lru:
                    return  # the closes under way will make the room
                self._drop(next(iter(self.lru)))
                continue
            waiter = next(iter(queue))
            self._unlink(waiter)
            if waiter.future.done():
                continue
            conn = self._room(waiter.origin)
            assert conn is not None
            waiter.future.set_result(conn)
            if conn.maybe_h2:
                self._share(waiter.origin)

    def _share(self, origin: Origin) -> None:
        """Let queued waiters of `origin` wait for a connection that may turn HTTP/2."""
        spare = origin.pending_h2 * (origin.h2_cap - 1) - origin.sharing
        for waiter in origin.waiters:
            if spare <= 0:
                return
            if waiter.queued:
                waiter.queued = False
                del self.queue[waiter]
                origin.sharing += 1
                spare -= 1

    def _rebalance(self, origin: Origin) -> None:
        """After a pending connection resolved, waiters that cannot share queue for room."""
        if origin.sharing > origin.pending_h2 * (origin.h2_cap - 1):
            for waiter in origin.waiters:
                if not waiter.queued:
                    waiter.queued = True
                    self.queue[waiter] = None
            origin.sharing = 0
        self._fill()

    def _unidle(self, conn: Conn) -> None:
        del self.lru[conn]
        conn.origin.idle_n -= 1

    def _sweep(self, now: float) -> None:
        """Close the oldest idle connections whose keep-alive ran out."""
        expiry = self.keepalive_expiry
        lru = self.lru
        while lru and expiry is not None:
            conn = next(iter(lru))
            if now - conn.idle_at <= expiry:
                return
            self._drop(conn)

    # -- closing -------------------------------------------------------------------------

    def _drop(self, conn: Conn) -> None:
        """Forget `conn` and close its socket in the background (no await here)."""
        if conn.closed:
            return
        conn.closed = True
        origin = conn.origin
        self.conns.discard(conn)
        origin.slots -= 1
        origin.ready.pop(conn, None)
        if conn in self.lru:
            self._unidle(conn)
            if conn.h2:
                pass
            elif origin.idle[0] is conn:  # the oldest idle connection is at the bottom
                origin.idle.popleft()
            else:
                origin.idle.remove(conn)
        if conn.inner is None:
            self.total -= 1
            self.connecting -= 1
            if conn.maybe_h2:
                conn.maybe_h2 = False
                origin.pending_h2 -= 1
                self._rebalance(origin)
        else:
            origin.open -= 1
            self.closed_count += 1
            self.closing_n += 1  # its room is free once the socket is closed
            self._close_later(conn.inner, self._closed_one)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("closing connection to %s", origin.label)
        self._forget(origin)

    def _forget(self, origin: Origin) -> None:
        """Drop the entry of an origin that has no connection and no waiter."""
        if not origin.slots and not origin.waiting and self.origins.get(origin.key) is origin:
            del self.origins[origin.key]

    def _retire(self, conn: Conn) -> None:
        """Close `conn` and give the room it frees to the next waiter."""
        self._drop(conn)
        self._fill()

    def _close_later(self, inner: Inner, done: Callable[[asyncio.Task[None]], None] | None) -> None:
        task = asyncio.get_running_loop().create_task(_quiet_close(inner))
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)
        if done is not None:
            task.add_done_callback(done)

    def _closed_one(self, _: asyncio.Task[None]) -> None:
        """A socket is closed: its room goes to the next waiter."""
        self.closing_n -= 1
        self.total -= 1
        self._fill()

    async def aclose(self) -> None:
        """Fail every waiter and close every connection, idle or in use."""
        self.closed = True
        waiters = [*self.queue, *(w for o in self.origins.values() for w in o.waiters)]
        for waiter in waiters:
            self._unlink(waiter)
            if not waiter.future.done():
                waiter.future.set_exception(TransportClosedError())
        for conn in list(self.conns):
            self._drop(conn)
        while self.closing:
            await asyncio.gather(*self.closing)


async def _quiet_close(inner: Inner) -> None:
    try:
        await inner.aclose()
    except Exception:  # a failed close leaves nothing to clean up
        logger.debug("error while closing a connection", exc_info=True)
