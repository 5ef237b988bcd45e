"""HTTP/2 against nginx (TLS, ALPN h2) in front of an upstream that counts each request.

nginx ends a connection with GOAWAY after `keepalive_requests` requests and answers an
oversized upload with 413 and RST_STREAM(NO_ERROR). The upstream behind it (uvicorn, in
a thread; `tests/nginx.py`) counts every request by the `x-request-id` header the test
sends, so "ran twice" and "ran but reported failed" are measured, not guessed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from ..nginx import Nginx, StartNginx
from .conftest import assert_clean

pytestmark = [pytest.mark.anyio, pytest.mark.nginx]


@pytest.fixture
def nginx_k5(start_nginx: StartNginx) -> Nginx:
    """nginx with `keepalive_requests 5` (a GOAWAY every five requests), and the upstream."""
    return start_nginx(keepalive_requests=5, upstream=True)


@pytest.fixture
def nginx_default(start_nginx: StartNginx) -> Nginx:
    """nginx with its default `keepalive_requests 1000`, and the upstream."""
    return start_nginx(upstream=True)


def runs(server: Nginx) -> dict[str, int]:
    """How many times the upstream ran each request id."""
    assert server.upstream is not None
    return dict(server.upstream.runs)


async def run_all(
    client: httpx.AsyncClient, method: str, count: int, concurrency: int, path: str = "/upstream/"
) -> dict[str, httpx.Response | Exception]:
    """Send `count` requests, `concurrency` at a time, each with its own `x-request-id`."""
    results: dict[str, httpx.Response | Exception] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(request_id: str) -> None:
        async with gate:
            try:
                content = b"job" if method == "POST" else None
                results[request_id] = await client.request(
                    method, path, content=content, headers={"x-request-id": request_id}
                )
            except httpx.HTTPError as exc:
                results[request_id] = exc

    await asyncio.gather(*(one(f"{method[0]}{i}") for i in range(count)))
    return results


def tls_client(server: Nginx, **options: Any) -> tuple[PoolTransport, Any]:
    """A transport offering h2 over TLS to nginx, and a client on it."""
    transport = PoolTransport(http2=True, verify=server.ssl_context(), **options)
    client = httpx.AsyncClient(transport=transport, base_url=server.https_url, timeout=20)
    return transport, client


async def test_thousand_gets_with_goaway_every_five_requests(nginx_k5: Nginx) -> None:
    """1,000 GETs at concurrency 100 against `keepalive_requests 5`: no errors."""
    transport, client = tls_client(nginx_k5)
    async with transport, client:
        results = await run_all(client, "GET", 1000, 100)
        failed = {k: v for k, v in results.items() if not isinstance(v, httpx.Response)}
        assert failed == {}
        assert all(r.status_code == 200 for r in results.values())  # type: ignore[union-attr]
        assert set(runs(nginx_k5)) == set(results)
        stats = transport.stats()
        assert stats["goaways"] > 0
        assert stats["errors"] == {}
        # Once the first GOAWAY showed five streams per connection, connections carry
        # five each: about the 200 that 1,000 requests need, few streams sent twice.
        assert stats["connections_opened"] <= 250
        assert stats["streams_resent"] <= 150
        assert_clean(transport)


@pytest.mark.parametrize("retry_post", [False, True])
async def test_posts_under_goaway_run_once_or_fail_as_not_processed(
    nginx_k5: Nginx, retry_post: bool
) -> None:
    """300 POSTs at concurrency 20 against `keepalive_requests 5`: each is answered exactly
    once or fails saying it was not processed; none runs twice; none that ran failed."""
    transport, client = tls_client(nginx_k5, retry_post=retry_post)
    async with transport, client:
        results = await run_all(client, "POST", 300, 20)
        ran = runs(nginx_k5)
        assert max(ran.values()) == 1  # none ran twice
        for request_id, result in results.items():
            if isinstance(result, httpx.Response):
                assert result.status_code == 200
                assert result.text == f"POST {request_id} 3"
                assert ran[request_id] == 1
            else:
                assert "not processed" in str(result), result
                assert ran.get(request_id, 0) == 0  # reported failed: did not run
        assert_clean(transport)


async def test_mixed_load_on_default_keepalive(nginx_default: Nginx) -> None:
    """1,500 requests (GETs and POSTs) at concurrency 50 on nginx's default settings: no
    errors, nothing runs twice."""
    transport, client = tls_client(nginx_default)
    async with transport, client:
        gets, posts = await asyncio.gather(
            run_all(client, "GET", 750, 25, "/upstream/?delay=0.001"),
            run_all(client, "POST", 750, 25),
        )
        results = gets | posts
        assert [v for v in results.values() if not isinstance(v, httpx.Response)] == []
        assert runs(nginx_default) == dict.fromkeys(results, 1)
        assert_clean(transport)


async def test_oversized_upload_gets_413_at_once(nginx_default: Nginx) -> None:
    """A 2 MiB upload to nginx (`client_max_body_size 1m`) comes back as 413 within a
    second, and a request running beside it on the connection is answered."""
    transport, client = tls_client(nginx_default)
    async with transport, client:
        await client.get("/upstream/", headers={"x-request-id": "warm"})
        beside = asyncio.create_task(
            client.get("/upstream/?delay=0.3", headers={"x-request-id": "beside"})
        )
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        big = {"x-request-id": "big"}
        response = await client.post("/upstream/", content=b"u" * (2 << 20), headers=big)
        assert response.status_code == 413
        assert loop.time() - started < 1.0
        assert (await beside).status_code == 200
        assert "big" not in runs(nginx_default)
        assert transport.stats()["connections_opened"] == 1
        assert_clean(transport)
