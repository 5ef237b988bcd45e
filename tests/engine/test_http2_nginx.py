"""HTTP/2 against nginx (TLS, ALPN h2) in front of an upstream that counts each request.

nginx ends a connection with GOAWAY after `keepalive_requests` requests and answers an
oversized upload with 413 and RST_STREAM(NO_ERROR). The upstream (uvicorn, in a thread)
counts every request by the `x-id` header the test sends, so "ran twice" and "ran but
reported failed" are measured, not guessed.

The nginx runner here is deliberately small; when the shared nginx fixture of the
conformance work lands, these tests can move onto it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from ..upstream import free_port
from .conftest import assert_clean, client_context
from .servers import serve_uvicorn, wait_for_port

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed"),
]

CONFIG = """
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests {keepalive_requests};
    client_max_body_size 1m;
    upstream counting {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://counting;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@dataclass
class Runs:
    """Requests the upstream ran, by the `x-id` header."""

    by_id: collections.Counter[str] = field(default_factory=collections.Counter)


def counting_upstream(runs: Runs) -> Any:
    """An ASGI app that counts each request by `x-id`, optionally after `?d=` seconds."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["query_string"].startswith(b"d="):
            await asyncio.sleep(float(scope["query_string"][2:]))
        request_id = dict(scope["headers"]).get(b"x-id", b"").decode()
        runs.by_id[request_id] += 1
        body = request_id.encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@contextlib.contextmanager
def run_nginx(
    tmp: Path, tls: dict[str, Any], keepalive_requests: int
) -> Iterator[tuple[str, Runs]]:
    """nginx (TLS, h2) proxying to a counting upstream; yields its URL and the counts."""
    runs = Runs()
    with serve_uvicorn(counting_upstream(runs)) as upstream:
        port = free_port()
        (tmp / "nginx.conf").write_text(
            CONFIG.format(
                user="user root root;",
                dir=tmp,
                port=port,
                upstream=upstream,
                cert=tls["cert"],
                key=tls["key"],
                keepalive_requests=keepalive_requests,
            )
        )
        command = ["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", "stderr"]
        process = subprocess.Popen(
            [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_port(port)
            yield f"https://127.0.0.1:{port}", runs
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def nginx_k5(tmp_path: Path, tls: dict[str, Any]) -> Iterator[tuple[str, Runs]]:
    """nginx with `keepalive_requests 5`: a GOAWAY every five requests."""
    with run_nginx(tmp_path, tls, keepalive_requests=5) as server:
        yield server


@pytest.fixture
def nginx_default(tmp_path: Path, tls: dict[str, Any]) -> Iterator[tuple[str, Runs]]:
    """nginx with its default `keepalive_requests 1000`."""
    with run_nginx(tmp_path, tls, keepalive_requests=1000) as server:
        yield server


async def run_all(
    client: httpx.AsyncClient, method: str, count: int, concurrency: int, path: str = "/"
) -> dict[str, httpx.Response | Exception]:
    """Send `count` requests, `concurrency` at a time, each with its own `x-id`."""
    results: dict[str, httpx.Response | Exception] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(request_id: str) -> None:
        async with gate:
            try:
                content = b"job" if method == "POST" else None
                results[request_id] = await client.request(
                    method, path, content=content, headers={"x-id": request_id}
                )
            except httpx.HTTPError as exc:
                results[request_id] = exc

    await asyncio.gather(*(one(f"{method[0]}{i}") for i in range(count)))
    return results


def tls_client(url: str, tls: dict[str, Any], **options: Any) -> tuple[PoolTransport, Any]:
    """A transport offering h2 over TLS, and a client on it."""
    transport = PoolTransport(http2=True, verify=client_context(tls), **options)
    return transport, httpx.AsyncClient(transport=transport, base_url=url, timeout=20)


async def test_thousand_gets_with_goaway_every_five_requests(
    nginx_k5: tuple[str, Runs], tls: dict[str, Any]
) -> None:
    """1,000 GETs at concurrency 100 against `keepalive_requests 5`: no errors."""
    url, runs = nginx_k5
    transport, client = tls_client(url, tls)
    async with transport, client:
        results = await run_all(client, "GET", 1000, 100)
        failed = {k: v for k, v in results.items() if not isinstance(v, httpx.Response)}
        assert failed == {}
        assert all(r.status_code == 200 for r in results.values())  # type: ignore[union-attr]
        assert set(runs.by_id) == set(results)
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
    nginx_k5: tuple[str, Runs], tls: dict[str, Any], retry_post: bool
) -> None:
    """300 POSTs at concurrency 20 against `keepalive_requests 5`: each is answered exactly
    once or fails saying it was not processed; none runs twice; none that ran failed."""
    url, runs = nginx_k5
    transport, client = tls_client(url, tls, retry_post=retry_post)
    async with transport, client:
        results = await run_all(client, "POST", 300, 20)
        assert max(runs.by_id.values()) == 1  # none ran twice
        for request_id, result in results.items():
            if isinstance(result, httpx.Response):
                assert result.status_code == 200
                assert result.text == request_id
                assert runs.by_id[request_id] == 1
            else:
                assert "not processed" in str(result), result
                assert runs.by_id[request_id] == 0  # reported failed: did not run
        assert_clean(transport)


async def test_mixed_load_on_default_keepalive(
    nginx_default: tuple[str, Runs], tls: dict[str, Any]
) -> None:
    """1,500 requests (GETs and POSTs) at concurrency 50 on nginx's default settings: no
    errors, nothing runs twice."""
    url, runs = nginx_default
    transport, client = tls_client(url, tls)
    async with transport, client:
        gets, posts = await asyncio.gather(
            run_all(client, "GET", 750, 25, "/?d=0.001"), run_all(client, "POST", 750, 25)
        )
        results = gets | posts
        assert [v for v in results.values() if not isinstance(v, httpx.Response)] == []
        assert runs.by_id == dict.fromkeys(results, 1)
        assert_clean(transport)


async def test_oversized_upload_gets_413_at_once(
    nginx_default: tuple[str, Runs], tls: dict[str, Any]
) -> None:
    """A 2 MiB upload to nginx (`client_max_body_size 1m`) comes back as 413 within a
    second, and a request running beside it on the connection is answered."""
    url, runs = nginx_default
    transport, client = tls_client(url, tls)
    async with transport, client:
        await client.get("/", headers={"x-id": "warm"})
        beside = asyncio.create_task(client.get("/?d=0.3", headers={"x-id": "beside"}))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await client.post("/", content=b"u" * (2 << 20), headers={"x-id": "big"})
        assert response.status_code == 413
        assert loop.time() - started < 1.0
        assert (await beside).status_code == 200
        assert "big" not in runs.by_id
        assert transport.stats()["connections_opened"] == 1
        assert_clean(transport)
