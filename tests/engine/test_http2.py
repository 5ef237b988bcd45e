"""PoolTransport over HTTP/2: multiplexing on granian, stream limits and GOAWAY on a raw h2 server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from ..upstream import Upstream
from .conftest import FlakyBackend, assert_clean, client_context, start_h2
from .servers import RawH2Server

pytestmark = pytest.mark.anyio


async def server_ports(url: str, tls: dict[str, Any]) -> list[int]:
    """The client ports granian's app has seen (asked over a separate connection)."""
    async with httpx.AsyncClient(verify=client_context(tls), http2=True) as client:
        ports: list[int] = (await client.get(f"{url}/ports")).json()
        return ports


async def test_http2_multiplexes_fifty_requests_on_one_connection(
    granian_h2: str, tls: dict[str, Any]
) -> None:
    """Fifty concurrent requests from a cold pool share one HTTP/2 connection to granian."""
    before = set(await server_ports(granian_h2, tls))
    async with (
        PoolTransport(http2=True, verify=client_context(tls)) as transport,
        httpx.AsyncClient(transport=transport, base_url=granian_h2) as client,
    ):
        responses = await asyncio.gather(*(client.get("/slow?d=0.1") for _ in range(50)))
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert {r.json()["http_version"] for r in responses} == {"2"}
        stats = transport.stats()
        assert stats["connections_opened"] == 1
        assert_clean(transport)
    assert len(set(await server_ports(granian_h2, tls)) - before) == 1


async def test_http2_upload_and_sequential_reuse(granian_h2: str, tls: dict[str, Any]) -> None:
    """Uploads and large concurrent downloads go over one reused HTTP/2 connection."""
    async with (
        PoolTransport(http2=True, verify=client_context(tls)) as transport,
        httpx.AsyncClient(transport=transport, base_url=granian_h2) as client,
    ):
        for _ in range(20):
            response = await client.post("/", content=b"q" * 200_000)
            assert response.status_code == 200
        downloads = await asyncio.gather(*(client.get("/bytes?n=3000000") for _ in range(3)))
        assert [len(r.content) for r in downloads] == [3_000_000] * 3
        assert transport.stats()["connections_opened"] == 1


async def test_streams_exhausted_open_a_second_connection(h2_servers: list[RawH2Server]) -> None:
    """When every connection carries the server's max_concurrent_streams, a new one opens."""
    server = await start_h2(h2_servers, max_streams=5, delay=0.1)
    async with (
        PoolTransport(http1=False, http2=True) as transport,
        httpx.AsyncClient(transport=transport, base_url=server.url) as client,
    ):
        await client.get("/")  # learns the server's SETTINGS
        responses = await asyncio.gather(*(client.get("/") for _ in range(20)))
        assert all(r.status_code == 200 for r in responses)
        assert server.accepted == 4
        assert server.max_concurrent <= 5
        assert_clean(transport)


async def test_http2_respects_max_connections(h2_servers: list[RawH2Server]) -> None:
    """With streams exhausted and max_connections reached, requests wait for a free stream."""
    server = await start_h2(h2_servers, max_streams=2, delay=0.05)
    limits = httpx.Limits(max_connections=2)
    async with (
        PoolTransport(http1=False, http2=True, limits=limits) as transport,
        httpx.AsyncClient(transport=transport, base_url=server.url) as client,
    ):
        await client.get("/")
        responses = await asyncio.gather(*(client.get("/") for _ in range(20)))
        assert all(r.status_code == 200 for r in responses)
        assert server.accepted <= 2
        assert server.max_concurrent <= 2


async def test_goaway_lets_accepted_streams_finish_and_moves_on(
    h2_servers: list[RawH2Server],
) -> None:
    """Streams at or below a GOAWAY's last stream id are answered on their connection; later
    requests go to a new one (RFC 9113 §6.8)."""
    server = await start_h2(h2_servers, goaway_after=3, delay=0.02)
    async with (
        PoolTransport(http1=False, http2=True) as transport,
        httpx.AsyncClient(transport=transport, base_url=server.url) as client,
    ):
        responses = await asyncio.gather(*(client.get("/") for _ in range(10)))
        assert all(r.status_code == 200 for r in responses)
        assert server.answered == 10  # each request ran once, all on the first connection
        assert server.accepted == 1
        stats = transport.stats()
        assert stats["goaways"] == 1
        assert stats["streams_resent"] == 0
        for _ in range(6):
            assert (await client.get("/")).status_code == 200
        assert server.accepted == 3  # the server sends GOAWAY after 3 streams each time
        assert server.answered == 16
        assert transport.stats()["streams_resent"] == 0
        assert transport.stats()["errors"] == {}
        assert_clean(transport)


async def test_idle_http2_connection_closed_by_server_is_not_used(
    h2_servers: list[RawH2Server],
) -> None:
    """An idle HTTP/2 connection the server closed is not handed to a POST (which would fail)."""
    server = await start_h2(h2_servers)
    async with (
        PoolTransport(http1=False, http2=True) as transport,
        httpx.AsyncClient(transport=transport, base_url=server.url) as client,
    ):
        assert (await client.post("/", content=b"1")).status_code == 200
        server.drop_connections()
        await asyncio.sleep(0.05)
        assert (await client.post("/", content=b"2")).status_code == 200
        assert transport.stats()["retries"] == 0
    assert server.accepted == 2


async def test_http2_cancellation_leaks_nothing(h2_servers: list[RawH2Server]) -> None:
    """Cancelling many in-flight HTTP/2 streams leaves the pool clean and usable."""
    server = await start_h2(h2_servers, delay=0.5)
    async with (
        PoolTransport(http1=False, http2=True) as transport,
        httpx.AsyncClient(transport=transport, base_url=server.url) as client,
    ):
        tasks = [asyncio.create_task(client.get("/")) for _ in range(20)]
        await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert_clean(transport)
        server.delay = 0
        assert (await client.get("/")).status_code == 200
        assert_clean(transport)


async def test_alpn_http11_fallback_does_not_wait_to_share(
    uvicorn_tls: Upstream, tls: dict[str, Any]
) -> None:
    """With http2=True against an HTTP/1.1-only TLS server, bursts get their own connections."""
    seen, url = uvicorn_tls, uvicorn_tls.url
    limits = httpx.Limits(max_connections=8)
    async with (
        PoolTransport(http2=True, verify=client_context(tls), limits=limits) as transport,
        httpx.AsyncClient(transport=transport, base_url=url) as client,
    ):
        for _ in range(2):
            responses = await asyncio.gather(*(client.get("/slow?d=0.05") for _ in range(16)))
            assert {r.http_version for r in responses} == {"HTTP/1.1"}
        assert_clean(transport)
    assert 2 <= seen.connections <= 8


async def test_failed_http2_connect_lets_sharing_waiters_open_their_own(
    h2_servers: list[RawH2Server],
) -> None:
    """When the connection others waited to share fails, one of them opens a new one."""
    server = await start_h2(h2_servers)
    backend = FlakyBackend(failures=1)
    async with (
        PoolTransport(http1=False, http2=True, network_backend=backend) as transport,
        httpx.AsyncClient(transport=transport, base_url=server.url) as client,
    ):
        results = await asyncio.gather(
            *(client.get("/") for _ in range(10)), return_exceptions=True
        )
        assert sum(isinstance(r, httpx.ConnectError) for r in results) == 1
        assert sum(isinstance(r, httpx.Response) for r in results) == 9
        assert_clean(transport)
    assert server.accepted == 1
    assert backend.connects == 2
