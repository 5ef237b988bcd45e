"""The issue's table: every transport of a provider, and its sync client, go through the
proxy the environment or the configuration names (a real forward proxy on loopback).

The target host `only-the-proxy.test` resolves only at the proxy, so an answer proves
the request went through it.
"""

from __future__ import annotations

from typing import Any, cast

import httpx
import pytest

import httpool
from httpool._config import TransportName

from ..proxies import ONLY_PROXY_HOST, ProxyLog, serve_proxy
from ..servers import port_of
from ..upstream import Upstream
from .conftest import client_context

pytestmark = pytest.mark.anyio

TRANSPORTS = ["httpool", "httpx", "aiohttp", "sync"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from no proxy variable."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


async def _get(provider: httpool.Provider, kind: str, path: str = "/ok") -> httpx.Response:
    async with httpool.ClientPool(provider) as pool:
        if kind == "sync":
            with pool.sync_client(provider.name) as client:
                return client.get(path)
        return await pool.client(provider.name).get(path)


def _provider(base_url: str, kind: str, **options: Any) -> httpool.Provider:
    transport = cast("TransportName", "httpool" if kind == "sync" else kind)
    if transport == "aiohttp":
        pytest.importorskip("httpx_aiohttp")
    return httpool.Provider("p", base_url=base_url, transport=transport, **options)


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_http_target_through_the_environment_proxy(
    kind: str, proxy: ProxyLog, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY sends an http:// request through the proxy (absolute form)."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    base = f"http://{ONLY_PROXY_HOST}:{port_of(upstream.url)}"
    response = await _get(_provider(base, kind), kind)
    assert response.status_code == 200
    assert proxy.forwarded == [f"{base}/ok"]
    assert upstream.requests[-1]["path"] == "/ok"


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_https_target_through_the_environment_proxy(
    kind: str,
    proxy: ProxyLog,
    uvicorn_tls: Upstream,
    tls: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY sends an https:// request through a CONNECT tunnel."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    base = f"https://{ONLY_PROXY_HOST}:{port_of(uvicorn_tls.url)}"
    verify = client_context(tls, ["http/1.1"])
    response = await _get(_provider(base, kind, verify=verify, http2=False), kind)
    assert response.status_code == 200
    assert proxy.tunnels == [f"{ONLY_PROXY_HOST}:{port_of(uvicorn_tls.url)}"]


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_configured_proxy_with_credentials(
    kind: str, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Provider(proxy=...)` with user-info authenticates; stats show the proxy masked."""
    with serve_proxy(auth=("alice", "proxy-pw-1")) as log:
        url = log.url.replace("http://", "http://alice:proxy-pw-1@")
        base = f"http://{ONLY_PROXY_HOST}:{port_of(upstream.url)}"
        provider = _provider(base, kind, proxy=url)
        async with httpool.ClientPool(provider) as pool:
            if kind == "sync":
                with pool.sync_client("p") as client:
                    response = client.get("/ok")
            else:
                response = await pool.client("p").get("/ok")
                stats = pool.stats()["p"]
                assert stats["proxy"] == [log.url.replace("http://", "http://***@")]
                assert "proxy-pw-1" not in repr(stats)
        assert response.status_code == 200
        assert log.refused == []
        assert len(log.forwarded) == 1


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_no_proxy_and_trust_env_false_go_direct(
    kind: str, proxy: ProxyLog, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY naming the host, or `trust_env=False`, connect directly: the proxy sees 0."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.0/8")
    response = await _get(_provider(upstream.url, kind), kind)
    assert response.status_code == 200
    monkeypatch.delenv("NO_PROXY")
    response = await _get(_provider(upstream.url, kind, trust_env=False), kind)
    assert response.status_code == 200
    assert proxy.requests == 0


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_https_proxy_for_every_transport(
    kind: str, uvicorn_tls: Upstream, tls: dict[str, Any]
) -> None:
    """An https:// proxy (`httpx.Proxy` with its TLS context) to an https target."""
    import ssl

    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tls["cert"], tls["key"])
    with serve_proxy(tls=server) as log:
        given = httpx.Proxy(log.url, ssl_context=client_context(tls, ["http/1.1"]))
        base = f"https://{ONLY_PROXY_HOST}:{port_of(uvicorn_tls.url)}"
        verify = client_context(tls, ["http/1.1"])
        response = await _get(_provider(base, kind, verify=verify, http2=False, proxy=given), kind)
    assert response.status_code == 200
    assert log.tunnels == [f"{ONLY_PROXY_HOST}:{port_of(uvicorn_tls.url)}"]
