"""PoolTransport against nginx (the Debian package), a real server nobody here wrote.

HTTP/1.1 on the plain server: byte-identical bodies, gzip, HEAD/204/304 keeping the
connection, nginx closing connections after 5 requests and after 1 s idle, an upload
refused early with 413. On the TLS server, one smoke test that `http2=True` gets h2.
The fixtures (`nginx`, `start_nginx`) come from `tests/conftest.py` and skip when nginx
is not installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from ..nginx import Nginx, StartNginx, nginx_binary, run_nginx
from .conftest import assert_clean

pytestmark = [pytest.mark.anyio, pytest.mark.nginx]

MiB = 1024 * 1024
TEXT = " ".join(f"word{i % 97} line {i}" for i in range(20_000)).encode()  # ~300 kB, compressible


def make_transport(kind: str) -> httpx.AsyncBaseTransport:
    """httpool's transport, or httpx's stock one as the control."""
    return PoolTransport() if kind == "pool" else httpx.AsyncHTTPTransport()


@pytest.mark.parametrize("size", [0, 1, 65_535, 65_536, 65_537, MiB + 7, 8 * MiB])
async def test_bodies_are_byte_identical(nginx: Nginx, size: int) -> None:
    """A static file of random bytes, 0 B to 8 MiB, arrives byte for byte, read whole and streamed."""
    data = os.urandom(size)
    (nginx.root / "blob.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=nginx.http_url) as client,
    ):
        response = await client.get("/blob.bin")
        assert response.status_code == 200
        assert int(response.headers["content-length"]) == size
        assert hashlib.sha256(response.content).hexdigest() == digest
        streamed = hashlib.sha256()
        async with client.stream("GET", "/blob.bin") as response:
            async for chunk in response.aiter_raw():
                streamed.update(chunk)
        assert streamed.hexdigest() == digest
        assert_clean(transport)
    assert len({entry["connection"] for entry in nginx.access_log()}) == 1  # reused


async def test_gzip_is_decoded(nginx: Nginx) -> None:
    """nginx gzips a text file (chunked, no Content-Length); httpx decodes it to the file."""
    (nginx.root / "text.txt").write_bytes(TEXT)
    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=nginx.http_url) as client,
    ):
        for _ in range(3):  # and the connection is reused after a chunked body
            response = await client.get("/text.txt")
            assert response.headers["content-encoding"] == "gzip"
            assert response.content == TEXT
            assert response.num_bytes_downloaded < len(TEXT) // 2  # it really came compressed
        assert {entry["connection"] for entry in nginx.access_log()} == {response.headers["x-conn"]}


async def _same_connection(nginx: Nginx, kind: str, step: str) -> None:
    (nginx.root / "blob.bin").write_bytes(os.urandom(10_000))
    (nginx.root / "text.txt").write_bytes(TEXT)
    async with httpx.AsyncClient(transport=make_transport(kind), base_url=nginx.http_url) as client:
        first = await client.get("/blob.bin")
        connection = first.headers["x-conn"]
        if step == "HEAD":
            response = await client.head("/blob.bin")
            assert response.status_code == 200
            assert response.headers["content-length"] == "10000"
        elif step == "HEAD gzip":  # nginx answers with neither Content-Length nor chunked
            response = await client.head("/text.txt")
            assert response.status_code == 200
            assert "content-length" not in response.headers
            assert "transfer-encoding" not in response.headers
        elif step == "204":
            response = await client.get("/no-content")
            assert response.status_code == 204
        else:
            response = await client.get(
                "/blob.bin", headers={"if-none-match": first.headers["etag"]}
            )
            assert response.status_code == 304
        assert response.content == b""
        assert response.headers["x-conn"] == connection
        after = await client.get("/blob.bin")
        assert after.content == first.content
        assert after.headers["x-conn"] == connection, f"{step} cost the connection"
    assert {entry["connection"] for entry in nginx.access_log()} == {connection}


@pytest.mark.parametrize("kind", ["pool", "stock"])
@pytest.mark.parametrize("step", ["HEAD", "204", "304"])
async def test_bodiless_answers_keep_the_connection(nginx: Nginx, kind: str, step: str) -> None:
    """HEAD, 204 and 304 end at the head; the next request goes on the same connection."""
    await _same_connection(nginx, kind, step)


async def test_head_without_length_keeps_the_connection_stock(nginx: Nginx) -> None:
    """Control: httpx's stock transport keeps the connection after a HEAD without length."""
    await _same_connection(nginx, "stock", "HEAD gzip")


async def test_head_without_length_keeps_the_connection(nginx: Nginx) -> None:
    """A HEAD that nginx answers without Content-Length (gzip) ends at the head; the connection stays."""
    await _same_connection(nginx, "pool", "HEAD gzip")


async def test_keepalive_requests_and_timeout_under_load(start_nginx: StartNginx) -> None:
    """3,000 GETs at concurrency 50, nginx closing each connection after 5 requests and 1 s idle: 0 errors."""
    nginx = start_nginx(keepalive_requests=5, keepalive_timeout="1s")
    (nginx.root / "small.bin").write_bytes(b"x" * 300)
    errors: list[BaseException] = []
    statuses: list[int] = []

    async def worker(client: httpx.AsyncClient, count: int) -> None:
        for _ in range(count):
            try:
                response = await client.get("/small.bin")
                statuses.append(response.status_code)
                assert response.content == b"x" * 300
            except Exception as exc:  # every error is counted and shown
                errors.append(exc)

    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=nginx.http_url) as client,
    ):
        await asyncio.gather(*(worker(client, 30) for _ in range(50)))
        await asyncio.sleep(1.5)  # nginx closes every idle connection after 1 s
        await asyncio.gather(*(worker(client, 30) for _ in range(50)))
        assert_clean(transport)
    assert errors == [], f"{len(errors)} errors, first: {errors[0]!r}"
    assert statuses == [200] * 3000
    log = nginx.access_log()
    assert len(log) == 3000  # each GET ran once
    assert max(int(entry["connection_requests"]) for entry in log) == 5
    assert len({entry["connection"] for entry in log}) >= 600  # nginx closed after 5


@pytest.mark.parametrize("kind", ["pool", "stock"])
async def test_early_413_on_a_large_upload(start_nginx: StartNginx, kind: str) -> None:
    """A 2 MiB POST over a 1 KiB limit gets nginx's 413 within a second; the upstream never runs."""
    nginx = start_nginx(client_max_body_size="1k", upstream=True)
    assert nginx.upstream is not None
    async with httpx.AsyncClient(
        transport=make_transport(kind), base_url=nginx.http_url, timeout=10
    ) as client:
        started = time.monotonic()
        response = await client.post(
            "/upstream/upload", content=os.urandom(2 * MiB), headers={"x-request-id": "big"}
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 413
        assert elapsed < 1.0, f"the 413 took {elapsed:.2f} s"
        small = await client.post(
            "/upstream/upload", content=b"ok", headers={"x-request-id": "small"}
        )
        assert small.text == "POST small 2"
    assert nginx.upstream.runs == {"small": 1}


async def test_upstream_counts_each_request_by_id(start_nginx: StartNginx) -> None:
    """The proxied upstream counts each request by its x-request-id, and nginx logs the id."""
    nginx = start_nginx(upstream=True)
    assert nginx.upstream is not None
    async with (
        PoolTransport() as transport,
        httpx.AsyncClient(transport=transport, base_url=nginx.http_url) as client,
    ):
        answers = await asyncio.gather(
            *(
                client.post(f"/upstream/{i}", content=b"abc", headers={"x-request-id": f"id-{i}"})
                for i in range(20)
            )
        )
    assert [r.text for r in answers] == [f"POST id-{i} 3" for i in range(20)]
    assert nginx.upstream.runs == {f"id-{i}": 1 for i in range(20)}
    logged = sorted(entry["request_id"] for entry in nginx.access_log())
    assert logged == sorted(f"id-{i}" for i in range(20))
    assert {entry["upstream_status"] for entry in nginx.access_log()} == {"200"}


async def test_http2_is_negotiated_over_tls(nginx: Nginx) -> None:
    """PoolTransport(http2=True) gets HTTP/2 from nginx's TLS server through ALPN."""
    data = os.urandom(100_000)
    (nginx.root / "blob.bin").write_bytes(data)
    async with (
        PoolTransport(http2=True, verify=nginx.ssl_context()) as transport,
        httpx.AsyncClient(transport=transport, base_url=nginx.https_url) as client,
    ):
        answers = await asyncio.gather(*(client.get("/blob.bin") for _ in range(10)))
    assert {r.http_version for r in answers} == {"HTTP/2"}
    assert all(r.content == data for r in answers)
    assert {entry["protocol"] for entry in nginx.access_log()} == {"HTTP/2.0"}


def test_the_fixture_stops_nginx(tmp_path: Path) -> None:
    """`run_nginx` leaves no process and no listening port behind."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx); .ci/run installs it")
    with run_nginx(tmp_path, upstream=True) as nginx:
        pid = int((nginx.prefix / "nginx.pid").read_text())
        port = int(nginx.http_url.rsplit(":", 1)[1])
        os.kill(pid, 0)  # running
        assert nginx.upstream is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass
