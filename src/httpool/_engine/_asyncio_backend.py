"""The asyncio network backend: the engine's network streams on plain asyncio transports.

`AsyncioBackend` connects with `loop.create_connection` (no per-read cancel scopes; a host
name through httpool's Happy Eyeballs, RFC 8305, on every loop); a
protocol buffers what arrives, so a server's close is seen without a system call (the
stale check of an idle connection), and reading pauses above a high-water mark.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Iterable
from typing import Any

from ._dns import DNSCache, happy_eyeballs, is_ip, system_resolver
from ._errors import ConnectError, ConnectTimeout, ReadError, ReadTimeout, WriteError, WriteTimeout
from ._network import NetworkStream

__all__ = ["AsyncioBackend"]

HIGH_WATER = 256 * 1024  # pause reading when this much is buffered


def _wake(future: asyncio.Future[None] | None, exc: BaseException | None = None) -> None:
    if future is not None and not future.done():
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drainer: asyncio.Future[None] | None = None
        self.reading_paused = self.writing_paused = self.aborted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        _wake(self.waiter)

    def eof_received(self) -> None:
        self.eof = True
        _wake(self.waiter)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        _wake(self.waiter)
        _wake(self.drainer, WriteError(str(exc or "connection closed")))

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _wake(self.drainer)


def _timed_out(future: asyncio.Future[None], exc: type[Exception]) -> None:
    _wake(future, exc())


class _Stream:
    """A network stream over an asyncio transport and `_Protocol` (see `_network`).

    READ TIMER: a read that waits must fail with `ReadTimeout` once its timeout has
    passed. A timer armed and cancelled for every wait costs about 2.2 µs on uvloop
    (`call_later` then `cancel`, timeit), for a wait that ends in time almost always. So
    the stream keeps one timer: a wait sets its deadline, and arms the timer only when
    none is armed or the armed one is later than that deadline. When the timer fires it
    fails the waiting read whose deadline has passed, arms itself again for a later
    deadline, or (no read waiting) lets the next wait arm it.
    """

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None  # of the read waiting now, if it has one
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # the deadline it was armed for (uvloop's `when()` rounds it)

    async def _read_wait(self, waiter: asyncio.Future[None], seconds: float) -> None:
        deadline = self._loop.time() + seconds
        self._deadline = deadline
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._read_timer)
        try:
            await waiter
        finally:
            self._deadline = None

    def _read_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return  # no read waits: the next one arms the timer
        # A wait arms the timer for its deadline unless an earlier one is armed, so the
        # timer is at or before the deadline of the wait now.
        if deadline <= self._timer_at:  # set for this wait: it timed out
            _wake(self._protocol.waiter, ReadTimeout())
        else:  # set for an earlier wait, which ended in time: on to this one's
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._read_timer)

    async def _wait(self, future: asyncio.Future[None], seconds: float | None, exc: Any) -> None:
        if seconds is None:
            await future
            return
        timer = self._loop.call_later(seconds, _timed_out, future, exc)
        try:
            await future
        finally:
            timer.cancel()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        protocol = self._protocol
        while not protocol.chunks:
            if protocol.eof:
                if protocol.error is not None:
                    raise ReadError(str(protocol.error))
                return b""
            protocol.waiter = waiter = self._loop.create_future()
            if timeout is None:
                await waiter
            else:
                await self._read_wait(waiter, timeout)
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            protocol.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        protocol.size -= len(chunk)
        if protocol.reading_paused and protocol.size < HIGH_WATER // 4:
            protocol.reading_paused = False
            protocol.transport.resume_reading()
        return chunk

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        protocol = self._protocol
        if protocol.error is not None or protocol.aborted:
            msg = "the connection is closed"
            raise WriteError(msg)
        if not buffer or protocol.eof:
            return  # as a socket would, until a reset: the next read tells what happened
        protocol.transport.write(buffer)
        if protocol.writing_paused:
            protocol.drainer = self._loop.create_future()
            await self._wait(protocol.drainer, timeout, WriteTimeout)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Close at once (abort: nothing is left to flush on a connection we drop)."""
        self._protocol.eof = self._protocol.aborted = True
        self._protocol.transport.abort()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> NetworkStream:
        protocol = self._protocol
        try:
            async with asyncio.timeout(timeout):
                transport = await self._loop.start_tls(
                    protocol.transport, protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self.close()
            msg = "TLS handshake timed out"
            raise ConnectTimeout(msg) from None
        except (OSError, ConnectionError) as exc:  # ssl.SSLError is an OSError
            self.close()
            raise ConnectError(str(exc)) from exc
        except BaseException:
            self.close()
            raise
        protocol.transport = transport
        return self

    def get_extra_info(self, info: str) -> Any:
        protocol = self._protocol
        if info == "is_readable":  # an idle connection with data or EOF: the server closed it
            return bool(protocol.chunks) or protocol.eof
        if info == "peer_closed":
            return protocol.eof
        names = {"client_addr": "sockname", "server_addr": "peername"}
        return protocol.transport.get_extra_info(names.get(info, info))


class AsyncioBackend:
    """The engine's network backend (see `_network`) on plain asyncio transports.

    A host name is resolved (through the `DNSCache` when there is one, else by the
    system's resolver for each connection) and connected by httpool's Happy Eyeballs
    over its addresses; an IP address is connected directly.
    """

    def __init__(self, dns: DNSCache | None = None) -> None:
        self._dns = dns

    async def _raced(self, host: str, port: int, local: str | None) -> tuple[Any, Any]:
        """Resolve `host` (through the DNS cache when there is one) and connect by
        httpool's Happy Eyeballs; asyncio's own race (3.11) can leave a losing socket
        unclosed, and uvloop has none."""
        if self._dns is not None:
            addresses = await self._dns.lookup(host, port)
        else:
            addresses = await system_resolver(host, port)
        sock = await happy_eyeballs(addresses, local)
        try:
            return await asyncio.get_running_loop().create_connection(_Protocol, sock=sock)
        except BaseException:
            sock.close()
            raise

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> NetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        if is_ip(host):  # one address: nothing to race
            connect = loop.create_connection(_Protocol, host, port, local_addr=local)
        else:
            connect = self._raced(host, port, local_address)
        stream = await self._connect(connect, timeout)
        sock = stream.get_extra_info("socket")
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
        except OSError as exc:
            stream.close()
            msg = f"the socket option {option!r} could not be set: {exc}"
            raise ConnectError(msg) from exc
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> NetworkStream:
        loop = asyncio.get_running_loop()
        return await self._connect(loop.create_unix_connection(_Protocol, path), timeout)

    async def connect_socket(
        self,
        sock: socket.socket,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> NetworkStream:
        """A stream on a socket connected elsewhere (by a SOCKS handshake, Happy Eyeballs)."""
        loop = asyncio.get_running_loop()
        try:
            return await self._connect(loop.create_connection(_Protocol, sock=sock), timeout)
        except BaseException:
            sock.close()
            raise

    async def _connect(self, connect: Any, seconds: float | None) -> _Stream:
        try:
            async with asyncio.timeout(seconds):
                _, protocol = await connect
        except TimeoutError:
            msg = "timed out while connecting"
            raise ConnectTimeout(msg) from None
        except (OSError, socket.gaierror) as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        return _Stream(protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
