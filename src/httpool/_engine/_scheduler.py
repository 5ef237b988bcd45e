"""The scheduler: connections per origin handed out in O(1), and the global books.

Per origin the pool keeps a stack of idle HTTP/1.1 connections (most recent on top),
the HTTP/2 connections that can take another stream, and a FIFO of waiting requests.
A global LRU of idle connections lets it close the oldest idle connection of any origin
to make room, and a global FIFO takes freed room in order. Only the
connection about to be handed out is checked for expiry; nothing scans all connections.
Bookkeeping is synchronous; sockets close in small tasks, and their room counts until
they are closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from ._errors import PoolTimeout
from ._messages import Request
from ._records import Conn, Inner, Key, Opener, Origin, TransportClosedError, Waiter, h2_capacity

__all__ = ["Conn", "Inner", "Origin", "Scheduler", "TransportClosedError"]

logger = logging.getLogger("httpool.transport")


class Scheduler:
    """The scheduler: `acquire` a connection, `connect` a new one, `release` it.

    Its global books: connections counted against `max_connections` (opening, open, or
    closing), the FIFO of requests waiting for room, the LRU of idle connections (the
    oldest is closed to make room or when its keep-alive runs out), and the closing of
    sockets in small background tasks.
    """

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

    # -- handing out ---------------------------------------------------------------------

    async def acquire(self, key: Key, pool_timeout: float | None, fresh: bool) -> Conn:
        """A connection for `key`; if its `inner` is None the caller must `connect` it."""
        if self.closed:
            raise TransportClosedError
        origin = self.origins.get(key)
        if origin is None:
            origin = self.origins[key] = Origin(key)
        if not origin.waiters:
            if not fresh:
                conn = self._take(origin)
                if conn is not None:
                    return conn
            if fresh or not self._can_share(origin):
                conn = self._room(origin)
                if conn is not None:
                    return conn
        return await self._wait(origin, pool_timeout, fresh)

    def _take(self, origin: Origin) -> Conn | None:
        """The origin's usable HTTP/2 connection or most recent idle one, or None."""
        now = time.monotonic()
        while origin.ready:
            conn = next(iter(origin.ready))
            if self.usable(conn, now):
                self._hand_h2(conn)
                return conn
            del origin.ready[conn]
            if conn.streams == 0:
                self._drop(conn)
        while origin.idle:
            conn = origin.idle.pop()
            self._unidle(conn)
            if self.usable(conn, now):
                conn.streams = 1
                conn.used += 1
                return conn
            self._drop(conn)
        return None

    def usable(self, conn: Conn, now: float) -> bool:
        """Whether `conn` may be handed out: the one check before every hand-out.

        The connection must be open and reusable by its own account, within
        `max_lifetime`, and not closed by the server. An idle one must also be within
        its keep-alive expiry, and an HTTP/1.1 one must have nothing buffered or
        readable: bytes after a complete response are not the next response.
        """
        inner = conn.inner
        if inner is None or not inner.is_available():
            return False
        lifetime = self.max_lifetime
        if lifetime is not None and now - conn.born > lifetime:
            return False
        stream = conn.stream
        if conn.h2:  # frames may arrive at any time; only the server's close counts
            if stream is not None and stream.get_extra_info("peer_closed"):
                return False
            return conn.streams > 0 or not inner.has_expired()
        # HTTP/1.1: `is_available` says idle with nothing buffered, and an idle one's
        # `has_expired` says past its expiry, or readable (closed, or stray bytes).
        return not inner.has_expired()

    def _hand_h2(self, conn: Conn) -> None:
        if conn.streams == 0 and conn in self.lru:
            self._unidle(conn)
        conn.streams += 1
        conn.used += 1
        if conn.streams >= h2_capacity(conn):
            conn.origin.ready.pop(conn, None)

    def _can_share(self, origin: Origin) -> bool:
        """Whether a connection being opened may turn HTTP/2 with a stream left over."""
        return origin.pending_h2 * (origin.h2_cap - 1) > origin.sharing

    async def _wait(self, origin: Origin, pool_timeout: float | None, fresh: bool) -> Conn:
        self.origins.setdefault(origin.key, origin)
        future: asyncio.Future[Conn] = asyncio.get_running_loop().create_future()
        waiter = Waiter(origin, future, fresh)
        self.waiting += 1
        origin.waiting += 1
        if not fresh:
            origin.waiters[waiter] = None
        if not fresh and self._can_share(origin):
            origin.sharing += 1
        else:
            waiter.queued = True
            self.queue[waiter] = None
            self._fill()  # may close an idle connection of another origin
        try:
            async with asyncio.timeout(pool_timeout):
                return await future
        except BaseException as exc:
            self._unlink(waiter)
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(future.result())  # handed over just as we gave up
            if isinstance(exc, TimeoutError):
                raise PoolTimeout from None
            raise
        finally:
            self.waiting -= 1
            origin.waiting -= 1
            self._forget(origin)

    # -- opening -------------------------------------------------------------------------

    async def connect(self, conn: Conn, request: Request) -> None:
        """Open the connection for a slot that `acquire` gave; on failure free the slot."""
        try:
            inner, is_h2 = await self._opener(conn, request)
        except BaseException:
            self._retire(conn)
            raise
        if conn.closed:  # the transport closed meanwhile
            self._close_later(inner, None)
            raise TransportClosedError
        origin = conn.origin
        conn.inner, conn.h2 = inner, is_h2
        self.connecting -= 1
        self.opened += 1
        origin.open += 1
        if is_h2 and self.usable(conn, time.monotonic()):
            origin.ready[conn] = None
            self._offer_h2(conn)
        if conn.maybe_h2:
            conn.maybe_h2 = False
            origin.pending_h2 -= 1
            origin.h1_only = not is_h2
            self._rebalance(origin)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("opened %s connection to %s", "h2" if is_h2 else "h1", origin.label)

    # -- giving back ---------------------------------------------------------------------

    def release(self, conn: Conn) -> None:
        """A request is done with `conn`: reuse it, hand it on, or close it."""
        conn.streams -= 1
        conn.done += 1
        inner = conn.inner
        if conn.closed:
            return
        if inner is None:  # a slot given back before connecting
            self._retire(conn)
            return
        origin = conn.origin
        now = time.monotonic()
        if not self.usable(conn, now):  # closed, dirty, expired or too old: never reused
            origin.ready.pop(conn, None)
            if conn.streams == 0:
                self._retire(conn)  # its room goes to the waiters: a fresh connection
            return
        if not conn.h2:
            while origin.waiters:
                waiter = next(iter(origin.waiters))
                self._unlink(waiter)
                if not waiter.future.done():
                    conn.streams = 1
                    conn.used += 1
                    waiter.future.set_result(conn)
                    return
        elif conn.streams < h2_capacity(conn):
            origin.ready[conn] = None
            self._offer_h2(conn)
        if conn.streams == 0:
            if self.queue and self.total >= self.max_connections:
                self._retire(conn)  # another origin waits for room
                return
            if not conn.h2:
                origin.idle.append(conn)
            conn.idle_at = now
            self.lru[conn] = None
            origin.idle_n += 1
            if len(self.lru) > self.max_keepalive:
                self._drop(next(iter(self.lru)))
        self._sweep(now)

    def _offer_h2(self, conn: Conn) -> None:
        """Hand an HTTP/2 connection's free streams to the origin's waiters (the caller
        has just found it `usable`)."""
        origin = conn.origin
        while origin.waiters and conn in origin.ready:
            waiter = next(iter(origin.waiters))
            self._unlink(waiter)
            if not waiter.future.done():
                self._hand_h2(conn)
                waiter.future.set_result(conn)


async def _quiet_close(inner: Inner) -> None:
    try:
        await inner.aclose()
    except Exception:  # a failed close leaves nothing to clean up
        logger.debug("error while closing a connection", exc_info=True)
