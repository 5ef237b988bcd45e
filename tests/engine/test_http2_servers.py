"""httpool's HTTP/2 connection against real servers over TLS: granian and hypercorn.

Stream sharing up to the server's limit, a slow reader that does not slow its siblings,
cancellation storms that leave nothing in use, and uploads.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from .conftest import assert_clean, client_context
from .servers import serve_granian, serve_hypercorn

pytestmark = pytest.mark.anyio

GRANIAN_STREAMS = 30


@pytest.fixture(scope="module", params=["granian", "hypercorn"])
def h2_server(request: pytest.FixtureRequest, tls: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """An HTTP/2 server over TLS and its SETTINGS_MAX_CONCURRENT_STREAMS."""
    if request.param == "granian":
        limit = ["--http2-max-concurrent-streams", str(GRANIAN_STREAMS)]
        with serve_granian(tls["cert"], tls["key"], "--http", "2", *limit) as port:
            yield f"https://127.0.0.1:{port}", GRANIAN_STREAMS
    else:
        with serve_hypercorn(tls["cert"], tls["key"]) as port:
            yield f"https://127.0.0.1:{port}", 100  # hypercorn's default


def tls_client(url: str, tls: dict[str, Any], **options: Any) -> tuple[PoolTransport, Any]:
    """A transport offering h2 over TLS, and a client on it."""
    transport = PoolTransport(http2=True, verify=client_context(tls), **options)
    client = httpx.AsyncClient(transport=transport, base_url=url, timeout=20)
    return transport, client


async def test_two_hundred_gets_share_connections_up_to_the_stream_limit(
    h2_server: tuple[str, int], tls: dict[str, Any]
) -> None:
    """200 concurrent GETs use at most ceil(200 / max_concurrent_streams) connections."""
    url, limit = h2_server
    transport, client = tls_client(url, tls)
    async with transport, client:
        await client.get("/")  # a warm connection knows the server's limit
        responses = await asyncio.gather(*(client.get("/slow?d=0.3") for _ in range(200)))
        assert {r.status_code for r in responses} == {200}
        assert {r.http_version for r in responses} == {"HTTP/2"}
        stats = transport.stats()
        assert stats["connections_opened"] <= math.ceil(200 / limit)
        assert stats["streams_open"] == 0
        assert_clean(transport)


async def test_a_slow_reader_does_not_stall_its_siblings(
    h2_server: tuple[str, int], tls: dict[str, Any]
) -> None:
    """While one stream's 8 MB body is not read, other downloads on the same connection
    complete; the slow one then reads to its end."""
    url, _ = h2_server
    transport, client = tls_client(url, tls)
    async with transport, client:
        await client.get("/")
        async with client.stream("GET", "/bytes?n=8000000") as slow:
            chunks = slow.aiter_raw()
            first = await chunks.__anext__()
            downloads = await asyncio.gather(*(client.get("/bytes?n=300000") for _ in range(20)))
            assert [len(r.content) for r in downloads] == [300_000] * 20
            size = len(first)
            async for chunk in chunks:
                size += len(chunk)
            assert size == 8_000_000
        assert transport.stats()["connections_opened"] == 1
        assert_clean(transport)


async def test_more_than_the_connection_window_flows_through_one_connection(
    h2_server: tuple[str, int], tls: dict[str, Any]
) -> None:
    """400 answers of 64 KiB (25 MiB, past httpool's 16 MiB connection window), most read
    after their stream ended, complete on one connection: the window they used is given
    back."""
    url, _ = h2_server
    transport, client = tls_client(url, tls, limits=httpx.Limits(max_connections=1))
    async with transport, client:
        for _ in range(20):
            responses = await asyncio.gather(*(client.get("/bytes?n=65536") for _ in range(20)))
            assert [len(r.content) for r in responses] == [65536] * 20
        assert transport.stats()["connections_opened"] == 1
        assert_clean(transport)


async def test_cancellation_storm_leaves_no_stream_or_connection_in_use(
    h2_server: tuple[str, int], tls: dict[str, Any]
) -> None:
    """300 requests cancelled at random moments end with zero streams and zero connections
    in use, and the pool still serves."""
    url, _ = h2_server
    transport, client = tls_client(url, tls)
    rng = random.Random(9)
    async with transport, client:

        async def one() -> None:
            if rng.random() < 0.5:
                await client.get(f"/slow?d={rng.random() / 5:.3f}")
            else:
                async with client.stream("GET", "/bytes?n=2000000") as response:
                    async for _ in response.aiter_raw():
                        await asyncio.sleep(0.001)

        tasks = [asyncio.create_task(one()) for _ in range(300)]
        for _ in range(30):
            await asyncio.sleep(0.01)
            for task in rng.sample(tasks, 15):
                task.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats = transport.stats()
        assert stats["streams_open"] == 0
        assert_clean(transport)
        assert (await client.get("/")).status_code == 200


async def test_uploads_of_every_size(h2_server: tuple[str, int], tls: dict[str, Any]) -> None:
    """POST bodies from empty to 3 MB (past every flow-control window) arrive whole."""
    url, _ = h2_server
    transport, client = tls_client(url, tls)
    async with transport, client:
        sizes = [0, 1, 16_383, 16_385, 65_535, 65_536, 1 << 20, 3_000_000]
        responses = await asyncio.gather(
            *(client.post("/echo", content=b"u" * size) for size in sizes)
        )
        assert [int(r.text) for r in responses] == sizes
        assert_clean(transport)
