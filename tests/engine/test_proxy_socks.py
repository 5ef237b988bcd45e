"""SOCKS proxies (pproxy's server on loopback): SOCKS5 with local or remote DNS, with
credentials, SOCKS4a; HTTP/1.1 and HTTP/2 inside; every transport that can speak SOCKS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

import httpool
from httpool._config import TransportName
from httpool._engine._transport import PoolTransport

from ..proxies import ONLY_PROXY_HOST, PProxy, serve_pproxy, start_socks4a
from ..servers import port_of
from ..upstream import Upstream
from .conftest import assert_idle, client_context

pytestmark = pytest.mark.anyio


@pytest.fixture
def socks5(tmp_path: Path) -> Iterator[PProxy]:
    """pproxy's SOCKS5 server."""
    with serve_pproxy("socks5", tmp_path) as server:
        yield server


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
async def test_socks5_to_http_and_https(
    scheme: str,
    socks5: PProxy,
    upstream: Upstream,
    uvicorn_tls: Upstream,
    tls: dict[str, Any],
) -> None:
    """Plain and TLS targets through SOCKS5; the proxy logs each target it connected."""
    url = socks5.url.replace("socks5://", f"{scheme}://")
    transport = PoolTransport(proxy=url, verify=client_context(tls, ["http/1.1"]))
    async with httpx.AsyncClient(transport=transport) as client:
        plain = f"http://localhost:{port_of(upstream.url)}/ok"
        secure = f"https://localhost:{port_of(uvicorn_tls.url)}/ok"
        for target in (plain, secure, plain, secure):
            assert (await client.get(target)).status_code == 200
        assert_idle(transport)
        assert transport.stats()["connections_opened"] == 2  # one per (proxy, origin)
    # remote DNS sends the name; local DNS the address it resolved here
    host = "localhost" if scheme == "socks5h" else "127.0.0.1"
    assert f"{host}:{port_of(upstream.url)}" in socks5.log
    assert f"{host}:{port_of(uvicorn_tls.url)}" in socks5.log


async def test_http2_through_socks5(socks5: PProxy, granian_h2: str, tls: dict[str, Any]) -> None:
    """HTTP/2 by ALPN inside a SOCKS5 connection."""
    transport = PoolTransport(proxy=socks5.url, http2=True, verify=client_context(tls))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"https://localhost:{port_of(granian_h2)}/")
        assert_idle(transport)
    assert response.http_version == "HTTP/2"
    assert f":{port_of(granian_h2)}" in socks5.log


async def test_socks5_credentials(tmp_path: Path, upstream: Upstream) -> None:
    """Right credentials pass; wrong ones give ProxyError naming the proxy masked."""
    with serve_pproxy("socks5", tmp_path, auth="bob:socks-pw-3") as server:
        target = f"http://127.0.0.1:{port_of(upstream.url)}/ok"
        # wrong first: pproxy then trusts a client address that authenticated once
        bad = server.url.replace("socks5://", "socks5://bob:wrong-socks-pw@")
        transport = PoolTransport(proxy=bad)
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ProxyError) as info:
                await client.get(target)
            assert_idle(transport)
        good = server.url.replace("socks5://", "socks5://bob:socks-pw-3@")
        async with httpx.AsyncClient(transport=PoolTransport(proxy=good)) as client:
            assert (await client.get(target)).status_code == 200
    message = str(info.value)
    assert server.url.replace("socks5://", "socks5://***@") in message
    assert "wrong-socks-pw" not in message
    assert "socks-pw-3" not in message


async def test_socks4(tmp_path: Path, upstream: Upstream) -> None:
    """SOCKS4 (pproxy's server): the name is resolved here, the proxy gets the address."""
    with serve_pproxy("socks4", tmp_path) as server:
        async with httpx.AsyncClient(transport=PoolTransport(proxy=server.url)) as client:
            response = await client.get(f"http://localhost:{port_of(upstream.url)}/ok")
        assert response.status_code == 200
        assert f"-> 127.0.0.1:{port_of(upstream.url)}" in server.log


async def test_socks4a_lets_the_proxy_resolve(upstream: Upstream) -> None:
    """SOCKS4a: a name only the proxy knows is reached through it."""
    seen: list[str] = []
    server = await start_socks4a(seen)
    url = f"socks4a://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with httpx.AsyncClient(transport=PoolTransport(proxy=url)) as client:
            target = f"http://{ONLY_PROXY_HOST}:{port_of(upstream.url)}/ok"
            assert (await client.get(target)).status_code == 200
    finally:
        server.close()
        await server.wait_closed()
    assert seen == [f"{ONLY_PROXY_HOST}:{port_of(upstream.url)}"]


async def test_socks_refused_is_a_proxy_error(tmp_path: Path) -> None:
    """No SOCKS server at the address: ProxyError naming it."""
    with serve_pproxy("socks5", tmp_path) as server:
        gone = server.url
    transport = PoolTransport(proxy=gone)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ProxyError, match=f"could not connect to the SOCKS proxy {gone}"):
            await client.get("http://localhost/")
        assert_idle(transport)


@pytest.mark.parametrize("kind", ["httpool", "httpx", "sync"])
async def test_socks5_for_every_transport_that_speaks_it(
    kind: str, socks5: PProxy, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALL_PROXY=socks5://... reaches httpool's engine, httpx's transport and the sync one."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", socks5.url)
    transport = cast("TransportName", "httpool" if kind == "sync" else kind)
    base = f"http://localhost:{port_of(upstream.url)}"
    provider = httpool.Provider("p", base_url=base, transport=transport)
    async with httpool.ClientPool(provider) as pool:
        if kind == "sync":
            with pool.sync_client("p") as client:
                response = client.get("/ok")
        else:
            response = await pool.client("p").get("/ok")
    assert response.status_code == 200
    assert f":{port_of(upstream.url)}" in socks5.log
