"""Dialing at its edges: the asyncio backend's TLS handshake that hangs or is cancelled,
writes on a dropped connection, socket options, and Happy Eyeballs over several
addresses (the first refused, all refused, none of the local address's family).

Servers are real sockets on 127.0.0.1: one that accepts and never answers, one that
accepts and closes at once, and a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

import pytest

from httpool._engine import _errors
from httpool._engine._asyncio_backend import AsyncioBackend
from httpool._engine._dns import (
    MAX_NAMES,
    Address,
    DNSCache,
    happy_eyeballs,
    interleave,
    system_resolver,
)

from ..servers import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
async def holding_server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A TCP server on 127.0.0.1 that accepts and sends nothing by itself: its port, and
    the writers of the connections it accepted (a test sends through them)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], held
    for writer in held:
        writer.transport.abort()
    server.close()
    await server.wait_closed()


@pytest.fixture
def silent_server(holding_server: tuple[int, list[asyncio.StreamWriter]]) -> int:
    """A TCP server on 127.0.0.1 that accepts and never sends a byte; its port."""
    return holding_server[0]


@pytest.fixture
async def closing_server() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that closes every connection at once; its port."""

    async def close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_tls_handshake_that_hangs_is_a_connect_timeout(silent_server: int) -> None:
    """A server that never answers the TLS hello fails within the timeout, as the engine's
    ConnectTimeout, and the connection is closed."""
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", silent_server, timeout=5)
    with pytest.raises(_errors.ConnectTimeout, match="TLS handshake timed out"):
        await stream.start_tls(ssl.create_default_context(), "localhost", timeout=0.2)
    with pytest.raises(_errors.WriteError, match="closed"):
        await stream.write(b"GET / HTTP/1.1\r\n\r\n")


async def test_a_tls_handshake_refused_is_a_connect_error(closing_server: int) -> None:
    """A server that drops the connection during the handshake is a ConnectError."""
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", closing_server, timeout=5)
    with pytest.raises(_errors.ConnectError):
        await stream.start_tls(ssl.create_default_context(), "localhost", timeout=5)


async def test_a_cancelled_tls_handshake_closes_the_connection(silent_server: int) -> None:
    """Cancelled mid-handshake, the stream is closed and the cancellation goes on."""
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", silent_server, timeout=5)
    task = asyncio.ensure_future(stream.start_tls(ssl.create_default_context(), "localhost"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(_errors.WriteError, match="closed"):
        await stream.write(b"x")


async def test_every_read_keeps_its_own_timeout(
    holding_server: tuple[int, list[asyncio.StreamWriter]],
) -> None:
    """The stream's one read timer (see `_Stream`) times out each read at its own
    deadline: a shorter timeout after a longer one, a read that waits past an earlier
    read's deadline, a read without timeout after reads with one."""
    port, writers = holding_server
    loop = asyncio.get_running_loop()

    def send_later(delay: float, data: bytes) -> None:
        loop.call_later(delay, writers[0].write, data)

    stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
    try:
        while not writers:
            await asyncio.sleep(0.01)
        send_later(0.05, b"a")
        assert await stream.read(100, timeout=5) == b"a"  # the timer: 5 s from here
        started = loop.time()
        with pytest.raises(_errors.ReadTimeout):
            await stream.read(100, timeout=0.2)  # earlier than the timer: its own
        assert 0.15 < loop.time() - started < 1.0
        started = loop.time()
        for _ in range(8):  # 0.8 s of reads, each answered within its 0.3 s
            send_later(0.1, b"b")
            assert await stream.read(100, timeout=0.3) == b"b"
        assert loop.time() - started > 0.6
        send_later(0.6, b"c")  # past the deadline of the reads above
        assert await stream.read(100, timeout=None) == b"c"
        started = loop.time()
        with pytest.raises(_errors.ReadTimeout):
            await stream.read(100, timeout=0.3)
        assert 0.25 < loop.time() - started < 1.0
    finally:
        await stream.aclose()


async def test_socket_options_are_applied(silent_server: int) -> None:
    """`socket_options` reach the connected socket."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    stream = await AsyncioBackend().connect_tcp(
        "127.0.0.1", silent_server, timeout=5, socket_options=options
    )
    try:
        sock = stream.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    finally:
        await stream.aclose()


async def test_a_socket_option_refused_is_a_connect_error_and_closes_the_connection() -> None:
    """A socket option the system refuses fails the connect as a ConnectError naming the
    option, and the connection just made is closed, not left open."""
    closed = asyncio.Event()

    async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # b"" once the client closes
        closed.set()
        writer.close()

    server = await asyncio.start_server(watch, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        bad = (socket.SOL_SOCKET, 0x7FFF, 1)  # no such option
        with pytest.raises(_errors.ConnectError, match="socket option"):
            await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5, socket_options=[bad])
        await asyncio.wait_for(closed.wait(), 2)
    finally:
        server.close()
        await server.wait_closed()


async def test_connecting_a_socket_that_cannot_be_used_closes_it() -> None:
    """`connect_socket` with a socket asyncio refuses (not connected) closes it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises((_errors.ConnectError, ValueError, OSError)):
        await AsyncioBackend().connect_socket(sock, timeout=5)
    assert sock.fileno() == -1


async def test_nothing_listening_is_a_connect_error() -> None:
    """A refused connection is the engine's ConnectError, with the system's message."""
    with pytest.raises(_errors.ConnectError, match=r"\S"):
        await AsyncioBackend().connect_tcp("127.0.0.1", free_port(), timeout=5)


def test_interleave_alternates_the_families() -> None:
    """RFC 8305: the families alternate, starting with the first one given."""
    v4 = [(socket.AF_INET, ("127.0.0.1", i)) for i in (1, 2, 3)]
    v6 = [(socket.AF_INET6, ("::1", i, 0, 0)) for i in (4,)]
    assert interleave([]) == []
    assert interleave([*v6, *v4]) == [v6[0], v4[0], v4[1], v4[2]]
    assert interleave([*v4, *v6]) == [v4[0], v6[0], v4[1], v4[2]]


async def test_the_system_resolver_gives_tcp_addresses() -> None:
    """An IP address resolves to itself, once per family, for TCP."""
    assert await system_resolver("127.0.0.1", 80) == [(socket.AF_INET, ("127.0.0.1", 80))]


async def test_happy_eyeballs_goes_on_after_a_refused_address(silent_server: int) -> None:
    """The first address refused, the second connects: its socket is returned."""
    addresses: list[Address] = [
        (socket.AF_INET, ("127.0.0.1", free_port())),
        (socket.AF_INET, ("127.0.0.1", silent_server)),
    ]
    sock = await happy_eyeballs(addresses, delay=5)
    try:
        assert sock.getpeername() == ("127.0.0.1", silent_server)
    finally:
        sock.close()


async def test_happy_eyeballs_names_every_failure() -> None:
    """Every address refused: one OSError that counts and lists them."""
    ports = [free_port(), free_port()]
    addresses: list[Address] = [(socket.AF_INET, ("127.0.0.1", port)) for port in ports]
    with pytest.raises(OSError, match="all 2 addresses failed") as info:
        await happy_eyeballs(addresses, delay=5)
    assert all(str(port) in str(info.value) for port in ports)


async def test_happy_eyeballs_keeps_to_the_local_address_family() -> None:
    """With an IPv6 local address, IPv4 addresses are not tried: nothing is left to try."""
    addresses: list[Address] = [(socket.AF_INET, ("127.0.0.1", free_port()))]
    with pytest.raises(OSError, match="no address to connect to"):
        await happy_eyeballs(addresses, local_address="::1")


async def test_happy_eyeballs_binds_the_local_address(silent_server: int) -> None:
    """With a local address, the socket is bound to it before connecting."""
    addresses: list[Address] = [(socket.AF_INET, ("127.0.0.1", silent_server))]
    sock = await happy_eyeballs(addresses, local_address="127.0.0.1")
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


async def test_the_same_failure_twice_is_raised_as_it_is() -> None:
    """When every attempt failed the same way, that error is raised itself (a refused
    connection stays a ConnectionRefusedError)."""
    port = free_port()
    addresses: list[Address] = [(socket.AF_INET, ("127.0.0.1", port))] * 2
    with pytest.raises(ConnectionRefusedError):
        await happy_eyeballs(addresses, delay=5)


async def test_the_dns_cache_keeps_at_most_max_names() -> None:
    """Past MAX_NAMES names the oldest answer goes first: it is looked up again, the
    newest is not."""
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[Address]:
        asked.append(host)
        return [(socket.AF_INET, ("127.0.0.1", port))]

    cache = DNSCache(ttl=60, resolver=resolver)
    names = [f"host{i}.test" for i in range(MAX_NAMES + 1)]
    for name in names:
        await cache.lookup(name, 80)
    assert cache.lookups == MAX_NAMES + 1
    await cache.lookup(names[-1], 80)
    assert cache.lookups == MAX_NAMES + 1  # the newest is still kept
    await cache.lookup(names[0], 80)
    assert cache.lookups == MAX_NAMES + 2  # the oldest was let go
    assert asked.count(names[0]) == 2
