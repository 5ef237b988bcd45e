"""Fixtures for the transport tests: real servers on 127.0.0.1, started and stopped here."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpcore
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from httpool._engine._transport import PoolTransport

from ..proxies import ProxyLog, serve_proxy
from ..upstream import Upstream, UpstreamServer, upstream_server
from .rawh2 import ScriptedH2Server
from .servers import RawH2Server, RawHTTPServer, serve_granian


@pytest.fixture
async def raw_server() -> AsyncIterator[RawHTTPServer]:
    """A raw HTTP/1.1 server on the test's loop whose misbehaviour a test can switch on."""
    server = RawHTTPServer()
    await server.start()
    yield server
    await server.aclose()


@pytest.fixture
async def server() -> AsyncIterator[ScriptedH2Server]:
    """A scripted raw HTTP/2 server on the test's loop (`rawh2.py`); a module with a
    `server` fixture of its own uses that one instead."""
    server = ScriptedH2Server()
    await server.start()
    yield server
    await server.aclose()


@pytest.fixture
async def h2_servers() -> AsyncIterator[list[RawH2Server]]:
    """A list to which a test appends raw HTTP/2 servers; they are stopped afterwards."""
    servers: list[RawH2Server] = []
    yield servers
    for server in servers:
        await server.aclose()


async def start_h2(servers: list[RawH2Server], **options: Any) -> RawH2Server:
    """Start a raw HTTP/2 server and register it for teardown."""
    server = RawH2Server(**options)
    await server.start()
    servers.append(server)
    return server


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trustme CA and a certificate for 127.0.0.1 (key in PKCS#8, as granian wants)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "only-the-proxy.test")
    folder: Path = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {"ca": ca, "cert": str(cert_file), "key": str(key_file)}


def client_context(tls: dict[str, Any], alpn: list[str] | None = None) -> ssl.SSLContext:
    """An SSL context that trusts the test CA and offers `alpn` (HTTP/2 and HTTP/1.1)."""
    context = ssl.create_default_context()
    tls["ca"].configure_trust(context)
    context.set_alpn_protocols(["h2", "http/1.1"] if alpn is None else alpn)
    return context


@pytest.fixture(scope="session")
def granian_h2(tls: dict[str, Any]) -> Iterator[str]:
    """granian serving HTTP/2 over TLS on 127.0.0.1 (one process for the session)."""
    with serve_granian(tls["cert"], tls["key"], "--http", "2") as port:
        yield f"https://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def uvicorn_tls_server(tls: dict[str, Any]) -> Iterator[UpstreamServer]:
    """The test upstream (uvicorn) over TLS, HTTP/1.1 only (ALPN does not offer h2)."""
    with upstream_server(ssl={"cert": tls["cert"], "key": tls["key"]}) as server:
        yield server


@pytest.fixture
def uvicorn_tls(uvicorn_tls_server: UpstreamServer) -> Upstream:
    """The session's TLS upstream, with a fresh record of what it saw in this test."""
    return uvicorn_tls_server.fresh()


class SlowConnectBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio backend, with a pause before each TCP connect."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.connects = 0
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(  # type: ignore[override]
        self, host: str, port: int, **options: Any
    ) -> httpcore.AsyncNetworkStream:
        """Pause, then connect."""
        self.connects += 1
        await asyncio.sleep(self.delay)
        return await self._backend.connect_tcp(host, port, **options)

    async def sleep(self, seconds: float) -> None:
        """Sleep on asyncio."""
        await asyncio.sleep(seconds)


class FlakyBackend(SlowConnectBackend):
    """Refuses the first `failures` connects, then connects as usual."""

    def __init__(self, failures: int, delay: float = 0.05) -> None:
        super().__init__(delay)
        self.failures = failures

    async def connect_tcp(  # type: ignore[override]
        self, host: str, port: int, **options: Any
    ) -> httpcore.AsyncNetworkStream:
        """Fail, or connect."""
        if self.failures > 0:
            self.failures -= 1
            self.connects += 1
            await asyncio.sleep(self.delay)
            raise httpcore.ConnectError("refused by the test")
        return await super().connect_tcp(host, port, **options)


class CountingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio backend that counts the sockets open on the client side."""

    def __init__(self) -> None:
        self.open = 0
        self.max_open = 0
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(  # type: ignore[override]
        self, host: str, port: int, **options: Any
    ) -> httpcore.AsyncNetworkStream:
        """Count, then connect."""
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            stream = await self._backend.connect_tcp(host, port, **options)
        except BaseException:
            self.open -= 1
            raise
        return _CountedStream(stream, self)

    async def sleep(self, seconds: float) -> None:
        """Sleep on asyncio."""
        await asyncio.sleep(seconds)


class _CountedStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream, backend: CountingBackend) -> None:
        self._stream = stream
        self._backend = backend
        self._open = True

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._backend.open -= 1
        await self._stream.aclose()

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self._stream = await self._stream.start_tls(*args, **kwargs)
        return self

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def assert_clean(transport: PoolTransport) -> None:
    """Nothing in use, nobody waiting, no request in flight, nothing connecting."""
    stats = transport.stats()
    assert stats["connections_in_use"] == 0, stats
    assert stats["waiters"] == 0, stats
    assert stats["requests_in_flight"] == 0, stats
    assert stats["connections_connecting"] == 0, stats


# -- the proxy shared by the proxy, SOCKS and DNS tests --------------------


@pytest.fixture
def proxy() -> Iterator[ProxyLog]:
    """A forward proxy with CONNECT on 127.0.0.1."""
    with serve_proxy() as log:
        yield log


def assert_idle(transport: PoolTransport) -> None:
    """Nothing in use, connecting or waiting."""
    stats = transport.stats()
    assert stats["connections_in_use"] == 0
    assert stats["connections_connecting"] == 0
    assert stats["requests_in_flight"] == 0
    assert stats["waiters"] == 0
