"""The engine: a request in, a response out, on a pooled connection.

`Engine.send` takes the engine's `Request` (plain values, `_messages`), asks the
`Scheduler` (`_scheduler`, on the records of `_records`) for a connection, which a
`Dialer` (`_dial`, on `_asyncio_backend`) opens, and runs the exchange on an
`HTTP11Connection` (`_http11`) or an `HTTP2Connection` (`_http2`), retrying where that
is safe. It raises the engine's exceptions (`_errors`) and counts them by name; the
response body gives its connection back exactly once when closed. The adapters
(`PoolTransport`, `Httpx2PoolTransport`) turn their library's requests into `Request`s
and the engine's answers and errors into their library's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from ._dial import Dialer
from ._errors import (
    ConnectionNotAvailable,
    EngineError,
    ReadError,
    RemoteProtocolError,
    StreamNotProcessed,
    UnsupportedProtocol,
    WriteError,
    kind_name,
)
from ._http2 import H2Counters, HTTP2Connection
from ._http11 import HTTP11Connection
from ._messages import Body, ConnectionBody, Request, Response
from ._proxy import Routes
from ._records import Key
from ._scheduler import Conn, Scheduler, TransportClosedError

__all__ = ["Engine", "PooledBody"]

logger = logging.getLogger("httpool.transport")

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
MAX_RESENDS = 1  # re-sends of a request the server did not process (GOAWAY, REFUSED_STREAM)
MAX_HOPS = 3  # connections given up before our stream opened (GOAWAY, closed, dead on PING)
MAX_ATTEMPTS = 1 + 1 + MAX_RESENDS + MAX_HOPS  # the first try and one stale-connection retry


def _loop_message(kind: str) -> str:
    return (
        f"this httpool client belongs to {kind} (for example one started by a second "
        "TestClient or by asyncio.run); get the client from the running app's pool "
        "(httpool.client(name) in a route, or pool.client(name)) instead of keeping it "
        "across event loops"
    )


def _response_started(inner: object) -> bool:
    """Whether response bytes arrived on an HTTP/1.1 connection (so no retry)."""
    return isinstance(inner, HTTP11Connection) and inner.response_started


class _Tries:
    """What one request has used of its retries."""

    __slots__ = ("fresh", "hops", "resends", "retried")

    def __init__(self) -> None:
        self.fresh = False  # the next try wants a new connection
        self.retried = False  # the one stale-connection retry is used
        self.resends = 0  # re-sends after "not processed"
        self.hops = 0  # connections that could not open our stream


class PooledBody:
    """A response body on a pooled connection: it gives the connection back exactly once
    when closed.

    An adapter's subclass, which is also its library's byte stream, says what
    `Engine.send` gives back (`answer`: its library's response streaming this body) and
    how the engine's exceptions look to its callers (`mapped`: its library's); `request`
    is the adapter's request, for those exceptions. Errors while reading or closing are
    counted.
    """

    __slots__ = ("_body", "_chunks", "_closed", "_conn", "_engine", "_request")

    def __init__(self, engine: Engine, conn: Conn, body: Body, request: Any) -> None:
        self._engine = engine
        self._conn = conn
        self._body = body
        self._chunks: AsyncIterator[bytes] | None = None
        self._request = request
        self._closed = False

    #: The adapter's library's response class (`httpx.Response`, `httpx2.Response`):
    #: `answer` makes one streaming this body. None: the engine's own `Response`.
    library_response: Any = None

    @classmethod
    def answer(  # noqa: PLR0917 (positional: once per response, cheaply)
        cls,
        engine: Engine,
        conn: Conn,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: ConnectionBody,
        extensions: dict[str, Any],
        request: Any,
    ) -> Any:
        """What `Engine.send` returns: a response streaming this body."""
        pooled = cls(engine, conn, body, request)
        made = cls.library_response
        if made is None:
            return Response(status, headers, pooled, extensions)
        response = made(status, headers=headers, stream=pooled, extensions=extensions)
        if body.ascii_head:
            # ENCODING: the library finds its `Headers.encoding` by decoding every name
            # and value (about 0.8 µs for four headers, timeit); for an all-ASCII head
            # the answer is "ascii", given here through the public setter.
            response.headers.encoding = "ascii"
        return response

    @staticmethod
    def mapped(exc: Exception, request: Any) -> Exception:
        """What the caller sees for the engine's `exc`: `exc` itself (an adapter's
        subclass: its library's exception of the same name)."""
        return exc

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._chunks = self._body.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        assert self._chunks is not None
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            mapped = self._failure(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _failure(self, exc: Exception) -> Exception:
        """`exc` counted, and as the caller sees it (`mapped`)."""
        self._engine.count(exc)
        return self.mapped(exc, self._request)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._body.aclose()
        except Exception as exc:
            mapped = self._failure(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            self._engine._done(self._conn)


class Engine:
    """The pool and its connections: `send` a `Request`, read the `Response`.

    It runs on asyncio, bound to the event loop that first uses it. See `PoolTransport`
    for the behaviour (the retries, the limits) and `stats` for the counters.
    """

    def __init__(
        self,
        *,
        dialer: Dialer,
        max_connections: int | None,
        max_keepalive: int | None,
        keepalive_expiry: float | None,
        max_lifetime: float | None,
        maybe_h2: Callable[[bytes], bool],
        retry_post: bool,
        routes: Routes | None,
        counters: H2Counters,
    ) -> None:
        self._retry_post = retry_post
        self._routes = routes
        self.proxy_labels = routes.describe() if routes is not None else []
        self._h2 = counters
        self._scheduler = Scheduler(
            max_connections=max_connections,
            max_keepalive=max_keepalive,
            keepalive_expiry=keepalive_expiry,
            max_lifetime=max_lifetime,
            maybe_h2=maybe_h2,
            opener=dialer,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self._closed = False
        self._in_flight = 0
        self._served = 0
        self._retried = 0
        self._resent = 0
        self._errors: dict[str, int] = {}

    # -- requests ------------------------------------------------------------------------

    async def send(
        self, request: Request, kind: type[PooledBody] = PooledBody, tag: Any = None
    ) -> Any:
        """Send `request` on a pooled connection and return the streaming response.

        `kind` is the body's class (an adapter's subclass of `PooledBody`, given `tag`:
        the adapter's request): what is returned is its `answer` (a `Response` here),
        and what is raised for the engine's exceptions its `mapped` ones. So an adapter returns this
        coroutine as its own, with no layer of its own around it.
        """
        self._check_loop()
        scheme = request.scheme
        if scheme != b"http" and scheme != b"https":  # noqa: PLR1714 (faster than a set)
            msg = (
                f"Request URL has an unsupported protocol '{scheme.decode('ascii', 'replace')}"
                "://' (use http or https)"
            )
            raise kind.mapped(UnsupportedProtocol(msg), tag)
        key: Key = (scheme, request.host, request.port)
        if self._routes is not None:
            via = self._routes.route(scheme, request.host, request.port)
            if via is not None:
                key = (*key, via)
        pool_timeout = request.timeouts.get("pool")
        scheduler = self._scheduler
        tries: _Tries | None = None  # made at the first failure: most requests have none
        fresh = False
        self._in_flight += 1
        try:
            for _ in range(MAX_ATTEMPTS):
                conn = await scheduler.acquire(key, pool_timeout, fresh)
                reused = conn.done  # requests it had finished before this one took it
                try:
                    if conn.inner is None:
                        await scheduler.connect(conn, request)
                    inner = conn.inner
                    assert isinstance(inner, HTTP11Connection | HTTP2Connection)
                    status, headers, stream, extensions = await inner.send(request)
                except BaseException as exc:
                    scheduler.release(conn)
                    if tries is None:
                        tries = _Tries()
                    if self._again(tries, exc, request, conn, reused):
                        fresh = tries.fresh
                        continue
                    raise
                return kind.answer(self, conn, status, headers, stream, extensions, tag)
            msg = "the server refused new streams on every connection tried"
            raise RemoteProtocolError(msg)  # noqa: TRY301
        except Exception as exc:
            self._in_flight -= 1
            self.count(exc)
            mapped = kind.mapped(exc, tag)
            if mapped is exc:
                raise
            raise mapped from exc
        except BaseException:
            self._in_flight -= 1
            raise

    def _again(
        self, tries: _Tries, exc: BaseException, request: Request, conn: Conn, reused: int
    ) -> bool:
        """Whether to try `request` again after `exc` (the retry rules, in one place).

        `reused` is how many requests `conn` had finished when this one took it: a
        connection that never finished one (new, or HTTP/2 with only this request's
        concurrent streams on it) cannot have gone stale, so its failure is not retried.
        """
        if isinstance(exc, ConnectionNotAvailable):
            if tries.hops < MAX_HOPS:
                tries.hops += 1  # nothing was sent on it: try another connection
                return True
            msg = "no connection tried could take a new stream (GOAWAY or closed)"
            raise RemoteProtocolError(msg) from exc
        if isinstance(exc, StreamNotProcessed):
            if tries.resends < MAX_RESENDS and isinstance(request.body, bytes):
                tries.resends += 1  # the server says it did not process it: any method
                tries.fresh = not exc.goaway  # after GOAWAY that connection takes no more
                self._resent += 1
                return True
            return False
        if (
            not tries.retried
            and reused
            and not _response_started(conn.inner)
            and self._may_retry(request, exc)
        ):
            tries.retried = tries.fresh = True
            self._retried += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("retrying %s on a fresh connection", request.method_text)
            return True
        return False

    def _may_retry(self, request: Request, exc: BaseException) -> bool:
        """Whether a failure on a reused connection, before any response, may be retried."""
        if not (self._retry_post or request.method in IDEMPOTENT):
            return False
        if not isinstance(request.body, bytes):
            return False  # a streamed body cannot be sent again
        if isinstance(exc, (ReadError, WriteError)):
            return True
        return isinstance(exc, RemoteProtocolError) and "disconnected" in str(exc)

    def count(self, exc: BaseException) -> None:
        """Count `exc` by name (`stats()["errors"]`) if it is one of the engine's kinds."""
        if isinstance(exc, EngineError):
            name = kind_name(exc)
            if name is not None:
                self._errors[name] = self._errors.get(name, 0) + 1

    def _done(self, conn: Conn) -> None:
        self._in_flight -= 1
        self._served += 1
        self._scheduler.release(conn)

    def _check_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            msg = (
                "httpool's PoolTransport runs on asyncio only; for another event loop "
                "(trio) use transport='httpx' in the provider"
            )
            raise RuntimeError(msg) from None
        if loop is not self._loop:
            if self._loop is None:
                self._loop = loop
            else:
                raise RuntimeError(_loop_message("another event loop"))
        if self._closed:
            raise TransportClosedError

    # -- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection, idle or in use, and fail waiting requests.

        Later requests raise `RuntimeError`. Closing twice is fine.
        """
        if self._closed:
            return
        self._closed = True
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # not on asyncio (trio): no request ever ran here
            loop = None
        if loop is None or (self._loop is not None and loop is not self._loop):
            self._scheduler.closed = True  # its sockets belong to the other loop: leave them
            if self._scheduler.conns:
                logger.warning(
                    "PoolTransport closed from another event loop: %d connections of the "
                    "loop that used it were abandoned",
                    len(self._scheduler.conns),
                )
            return
        await self._scheduler.aclose()

    def stats(self) -> dict[str, Any]:
        """JSON-ready counters, cheap to take (see `PoolTransport.stats`)."""
        scheduler = self._scheduler
        idle = len(scheduler.lru)
        open_ = scheduler.total - scheduler.connecting - scheduler.closing_n
        return {
            "connections_open": open_,
            "connections_idle": idle,
            "connections_in_use": open_ - idle,
            "connections_connecting": scheduler.connecting,
            "connections_opened": scheduler.opened,
            "connections_closed": scheduler.closed_count,
            "requests_in_flight": self._in_flight,
            "waiters": scheduler.waiting,
            "requests_served": self._served,
            "retries": self._retried,
            "streams_open": self._h2.streams_open,
            "goaways": self._h2.goaways,
            "streams_resent": self._resent,
            "errors": dict(self._errors),
            "origins": {
                o.label: {"open": o.open, "idle": o.idle_n, "in_use": o.open - o.idle_n}
                for o in list(scheduler.origins.values())
                if o.open
            },
        }
