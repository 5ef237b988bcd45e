"""The engine's DNS cache (one lookup per TTL, shared by a burst, re-resolved with
max_lifetime) and Happy Eyeballs over the cached addresses, against uvicorn on loopback."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from httpool._engine._dns import DNSCache, happy_eyeballs, interleave
from httpool._engine._transport import PoolTransport

from ..servers import port_of
from ..upstream import Upstream

pytestmark = pytest.mark.anyio


class Counting:
    """A resolver hook: maps every name to 127.0.0.1 and counts the lookups."""

    def __init__(self, addresses: list[tuple[int, tuple[str, int]]] | None = None) -> None:
        self.names: list[str] = []
        self.addresses = addresses

    async def __call__(self, host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
        self.names.append(host)
        await asyncio.sleep(0.05)  # a lookup takes a while: the burst piles up behind it
        if self.addresses is not None:
            return list(self.addresses)
        return [(socket.AF_INET, ("127.0.0.1", port))]


async def test_a_burst_of_50_connections_makes_one_lookup(upstream: Upstream) -> None:
    """50 concurrent requests open 50 connections to a name resolved once."""
    resolver = Counting()
    transport = PoolTransport(resolver=resolver, dns_ttl=30)
    url = f"http://api.example.test:{port_of(upstream.url)}/slow?d=0.3"
    async with httpx.AsyncClient(transport=transport) as client:
        responses = await asyncio.gather(*(client.get(url) for _ in range(50)))
        assert all(r.status_code == 200 for r in responses)
        assert transport.stats()["connections_opened"] == 50
    assert resolver.names == ["api.example.test"]


async def test_the_answer_expires_and_max_lifetime_re_resolves(upstream: Upstream) -> None:
    """After the TTL, a new connection (the old one retired by max_lifetime) looks up again."""
    resolver = Counting()
    transport = PoolTransport(resolver=resolver, dns_ttl=0.2, max_lifetime=0.3)
    url = f"http://api.example.test:{port_of(upstream.url)}/ok"
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(url)
        await client.get(url)  # reused: no connection, no lookup
        assert resolver.names == ["api.example.test"]
        await asyncio.sleep(0.4)
        await client.get(url)
        assert transport.stats()["connections_opened"] == 2
    assert resolver.names == ["api.example.test"] * 2


async def test_a_failed_lookup_is_not_kept() -> None:
    """A name that did not resolve is looked up again by the next connection."""
    calls: list[str] = []

    async def failing(host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
        calls.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    transport = PoolTransport(resolver=failing, dns_ttl=30)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):
            with pytest.raises(httpx.ConnectError, match="not known"):
                await client.get("http://nowhere.example.test/")
        assert transport.stats()["connections_connecting"] == 0
    assert calls == ["nowhere.example.test"] * 2


async def test_dns_ttl_zero_resolves_for_each_connection(upstream: Upstream) -> None:
    """dns_ttl=0: no cache (asyncio resolves each time, here the name `localhost`)."""
    transport = PoolTransport(dns_ttl=0)
    assert transport.dns is None
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"http://localhost:{port_of(upstream.url)}/ok")
    assert response.status_code == 200


async def test_cache_shares_one_lookup_between_cancelled_and_waiting_callers() -> None:
    """A caller cancelled during the lookup does not cancel it for the others."""
    resolver = Counting()
    cache = DNSCache(30, resolver)
    first = asyncio.create_task(cache.lookup("a.test", 80))
    second = asyncio.create_task(cache.lookup("a.test", 80))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == [(socket.AF_INET, ("127.0.0.1", 80))]
    assert resolver.names == ["a.test"]
    assert await cache.lookup("a.test", 80) == [(socket.AF_INET, ("127.0.0.1", 80))]
    assert cache.lookups == 1


def test_interleave_alternates_families_from_the_first() -> None:
    """RFC 8305 section 4: v6, v4, v6, v4, ... when v6 came first."""
    v6a, v6b = (socket.AF_INET6, ("::1", 1, 0, 0)), (socket.AF_INET6, ("::2", 1, 0, 0))
    v4a, v4b = (socket.AF_INET, ("127.0.0.1", 1)), (socket.AF_INET, ("127.0.0.2", 1))
    assert interleave([v6a, v6b, v4a, v4b]) == [v6a, v4a, v6b, v4b]
    assert interleave([v4a, v6a, v6b]) == [v4a, v6a, v6b]


def _v6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_happy_eyeballs_falls_back_to_the_other_family(upstream: Upstream) -> None:
    """A name with v6 and v4 addresses: the v6 one refuses, the v4 one connects."""
    if not _v6_loopback():
        pytest.skip("no IPv6 loopback here")
    port = port_of(upstream.url)
    resolver = Counting([(socket.AF_INET6, ("::1", port)), (socket.AF_INET, ("127.0.0.1", port))])
    transport = PoolTransport(resolver=resolver)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"http://dual.example.test:{port}/ok")
    assert response.status_code == 200


async def test_happy_eyeballs_staggers_past_an_address_that_does_not_answer() -> None:
    """A first address that never answers does not hold up the second: the next attempt
    starts after `delay`, and the first to connect wins."""
    accepted: list[asyncio.StreamWriter] = []

    async def keep(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(keep, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # a listener that never accepts, its backlog full: Linux drops further SYNs, so a
    # connect to it hangs (retrying for seconds) instead of failing
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)  # noqa: FBT003
        filler.connect_ex(full.getsockname())
        fillers.append(filler)
    await asyncio.sleep(0.1)
    addresses = [(socket.AF_INET, full.getsockname()), (socket.AF_INET, ("127.0.0.1", port))]
    try:
        connecting = happy_eyeballs(addresses, delay=0.1)  # type: ignore[arg-type]  # AddressFamily is an int
        sock = await asyncio.wait_for(connecting, 3.0)
        assert sock.getpeername()[1] == port
        sock.close()
    finally:
        for filler in fillers:
            filler.close()
        full.close()
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()


async def test_happy_eyeballs_tries_the_next_at_once_after_a_refusal() -> None:
    """A refused address starts the next attempt without waiting; all refused: OSError."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()
    closed.close()
    with pytest.raises(OSError, match="Connect call failed"):
        await asyncio.wait_for(happy_eyeballs([(socket.AF_INET, dead)] * 2, delay=30), 3.0)


def test_provider_dns_ttl_is_validated() -> None:
    """A negative or non-number dns_ttl fails at construction naming the field."""
    import httpool

    for bad in (-1, "10", float("nan")):
        with pytest.raises(httpool.ConfigError, match=r"Provider\('p'\)\.dns_ttl"):
            httpool.Provider("p", base_url="https://api.example.com", dns_ttl=bad)  # type: ignore[arg-type]
    assert httpool.Provider("p", base_url="https://api.example.com", dns_ttl=0).dns_ttl == 0


def test_dns_off_and_on_under_uvloop(upstream: Upstream) -> None:
    """Under uvloop, with the DNS cache off and on, a host name connects (httpool's race)."""
    uvloop = pytest.importorskip("uvloop")

    async def go() -> list[int]:
        codes = []
        for ttl in (0, 10):
            async with httpx.AsyncClient(transport=PoolTransport(dns_ttl=ttl)) as client:
                response = await client.get(f"http://localhost:{port_of(upstream.url)}/ok")
                codes.append(response.status_code)
        return codes

    assert uvloop.run(go()) == [200, 200]


async def test_a_host_name_without_the_cache_connects_by_httpools_race(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the DNS cache off, a host name is still raced by httpool's Happy Eyeballs (not
    asyncio's, which can leave a losing socket open on 3.11); an IP address is not raced."""
    from httpool._engine import _asyncio_backend

    raced: list[list[tuple[int, tuple[object, ...]]]] = []

    async def spy(
        addresses: list[tuple[int, tuple[object, ...]]], local: str | None
    ) -> socket.socket:
        raced.append(addresses)
        return await happy_eyeballs(addresses, local)

    monkeypatch.setattr(_asyncio_backend, "happy_eyeballs", spy)
    port = port_of(upstream.url)
    async with httpx.AsyncClient(transport=PoolTransport(dns_ttl=0)) as client:
        assert (await client.get(f"http://localhost:{port}/ok")).status_code == 200
        assert (await client.get(f"http://127.0.0.1:{port}/ok")).status_code == 200
    assert len(raced) == 1
    assert {family for family, _ in raced[0]} <= {socket.AF_INET, socket.AF_INET6}
