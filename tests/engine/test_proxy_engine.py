"""httpool's engine through real proxies on loopback: absolute form, CONNECT tunnels
(HTTP/1.1 and HTTP/2 inside), refusals, cancellation and timeouts, pooling per proxy."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from ..proxies import ONLY_PROXY_HOST, ProxyLog, serve_proxy
from ..servers import port_of
from ..upstream import Upstream
from .conftest import assert_idle, client_context

pytestmark = pytest.mark.anyio


async def test_http_target_in_absolute_form_pooled_per_proxy_and_origin(
    proxy: ProxyLog, upstream: Upstream
) -> None:
    """http:// requests go to the proxy in absolute form, and reuse one connection."""
    base = f"http://{ONLY_PROXY_HOST}:{port_of(upstream.url)}"
    transport = PoolTransport(proxy=proxy.url)
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        for _ in range(3):
            assert (await client.get("/ok?x=1")).status_code == 200
        stats = transport.stats()
    assert proxy.forwarded == [f"{base}/ok?x=1"]  # one connection carried all three
    assert len(upstream.requests) == 3
    assert stats["connections_opened"] == 1
    [label] = stats["origins"]
    assert label == f"http://{ONLY_PROXY_HOST}:{port_of(base)} via {proxy.url}"


async def test_https_target_through_a_connect_tunnel(
    proxy: ProxyLog, uvicorn_tls: Upstream, tls: dict[str, Any]
) -> None:
    """https:// requests open one CONNECT tunnel and run TLS to the target inside it."""
    port = port_of(uvicorn_tls.url)
    transport = PoolTransport(proxy=proxy.url, verify=client_context(tls, ["http/1.1"]))
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            response = await client.get(f"https://{ONLY_PROXY_HOST}:{port}/ok")
            assert response.status_code == 200
        assert_idle(transport)
    assert proxy.tunnels == [f"{ONLY_PROXY_HOST}:{port}"]


async def test_http2_through_a_connect_tunnel(
    proxy: ProxyLog, granian_h2: str, tls: dict[str, Any]
) -> None:
    """HTTP/2 by ALPN inside a tunnel: 20 concurrent requests share one tunnel."""
    port = port_of(granian_h2)
    transport = PoolTransport(proxy=proxy.url, http2=True, verify=client_context(tls))
    async with httpx.AsyncClient(transport=transport) as client:
        url = f"https://{ONLY_PROXY_HOST}:{port}/"
        first = await client.get(url)
        responses = await asyncio.gather(*(client.get(url) for _ in range(20)))
        assert_idle(transport)
    assert first.http_version == "HTTP/2"
    assert all(r.status_code == 200 and r.http_version == "HTTP/2" for r in responses)
    assert proxy.tunnels == [f"{ONLY_PROXY_HOST}:{port}"]


async def test_proxy_credentials_from_user_info(upstream: Upstream) -> None:
    """User-info in the proxy URL becomes Basic `Proxy-Authorization`, never shown."""
    with serve_proxy(auth=("alice", "tunnel-pw-9")) as log:
        url = log.url.replace("http://", "http://alice:tunnel-pw-9@")
        transport = PoolTransport(proxy=url)
        async with httpx.AsyncClient(transport=transport) as client:
            target = f"http://{ONLY_PROXY_HOST}:{port_of(upstream.url)}/ok"
            assert (await client.get(target)).status_code == 200
            stats = repr(transport.stats())
    assert log.refused == []
    assert "tunnel-pw-9" not in stats
    assert "***@" in stats
    # the upstream never sees the proxy's credentials
    assert "proxy-authorization" not in upstream.requests[-1]["headers"]


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_407_is_a_proxy_error_that_leaks_nothing(
    scheme: str, uvicorn_tls: Upstream, upstream: Upstream, tls: dict[str, Any]
) -> None:
    """Wrong credentials: ProxyError (https) or the proxy's 407 (http), no password shown,
    nothing left in use."""
    with serve_proxy(auth=("alice", "right-pw")) as log:
        url = log.url.replace("http://", "http://alice:wrong-pw-7@")
        transport = PoolTransport(proxy=url, verify=client_context(tls, ["http/1.1"]))
        async with httpx.AsyncClient(transport=transport) as client:
            if scheme == "https":
                target = f"https://{ONLY_PROXY_HOST}:{port_of(uvicorn_tls.url)}/ok"
                with pytest.raises(httpx.ProxyError) as info:
                    await client.get(target)
                message = str(info.value)
                assert "407" in message
                assert log.url.replace("http://", "http://***@") in message
                assert "wrong-pw-7" not in message
                assert transport.stats()["errors"] == {"ProxyError": 1}
            else:  # in absolute form the proxy's answer is the response, as in httpx
                target = f"http://{ONLY_PROXY_HOST}:{port_of(upstream.url)}/ok"
                assert (await client.get(target)).status_code == 407
            assert_idle(transport)
            assert transport.stats()["connections_open"] == 0
    assert log.refused == [407]
    assert log.open_links == 0


async def test_403_and_refused_are_proxy_errors(uvicorn_tls: Upstream, tls: dict[str, Any]) -> None:
    """A proxy that forbids the tunnel, or is not there, gives ProxyError naming it."""
    target = f"https://{ONLY_PROXY_HOST}:{port_of(uvicorn_tls.url)}/ok"
    with serve_proxy(deny=403) as log:
        transport = PoolTransport(proxy=log.url, verify=client_context(tls))
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ProxyError, match="refused the tunnel .* 403 Forbidden"):
                await client.get(target)
            assert_idle(transport)
        gone = log.url
    transport = PoolTransport(proxy=gone)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ProxyError, match=f"could not connect to the proxy {gone}"):
            await client.get(target)
        assert_idle(transport)


@pytest.fixture
async def silent_proxy() -> AsyncIterator[str]:
    """A proxy that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_silent_proxy_times_out_as_a_connect_timeout(silent_proxy: str) -> None:
    """CONNECT without an answer fails within the connect timeout and frees its slot."""
    transport = PoolTransport(proxy=silent_proxy)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, connect=0.3)) as c:
        with pytest.raises(httpx.ConnectTimeout, match="did not answer CONNECT"):
            await c.get("https://only-the-proxy.test/")
        assert_idle(transport)
        assert transport.stats()["connections_open"] == 0


async def test_cancel_and_read_timeout_inside_a_tunnel_leave_nothing_in_use(
    proxy: ProxyLog, uvicorn_tls: Upstream, tls: dict[str, Any]
) -> None:
    """A cancelled request and a read timeout through a tunnel free their connection."""
    base = f"https://{ONLY_PROXY_HOST}:{port_of(uvicorn_tls.url)}"
    transport = PoolTransport(proxy=proxy.url, verify=client_context(tls, ["http/1.1"]))
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        task = asyncio.create_task(client.get("/slow?d=5"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_idle(transport)
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow?d=5", timeout=httpx.Timeout(5, read=0.2))
        assert_idle(transport)
        assert (await client.get("/ok")).status_code == 200
        assert_idle(transport)


@pytest.fixture
def tls_proxy(tls: dict[str, Any]) -> Iterator[ProxyLog]:
    """A forward proxy spoken to over TLS (an https:// proxy), certificate by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls["cert"], tls["key"])
    with serve_proxy(tls=context) as log:
        yield log


@pytest.mark.parametrize("target", ["http", "https", "h2"])
async def test_https_proxy(
    target: str,
    tls_proxy: ProxyLog,
    upstream: Upstream,
    uvicorn_tls: Upstream,
    granian_h2: str,
    tls: dict[str, Any],
) -> None:
    """TLS to the proxy itself; for https targets TLS inside that TLS (HTTP/2 too)."""
    assert tls_proxy.url.startswith("https://")
    given = httpx.Proxy(tls_proxy.url, ssl_context=client_context(tls, ["http/1.1"]))
    target_url = {"http": upstream.url, "https": uvicorn_tls.url, "h2": granian_h2}[target]
    scheme = "http" if target == "http" else "https"
    url = f"{scheme}://{ONLY_PROXY_HOST}:{port_of(target_url)}/"
    alpn = ["h2", "http/1.1"] if target == "h2" else ["http/1.1"]
    transport = PoolTransport(proxy=given, http2=True, verify=client_context(tls, alpn))
    async with httpx.AsyncClient(transport=transport) as client:
        responses = [await client.get(url) for _ in range(2)]
        assert_idle(transport)
    assert all(r.status_code == 200 for r in responses)
    assert responses[0].http_version == ("HTTP/2" if target == "h2" else "HTTP/1.1")
    assert tls_proxy.requests == 1  # one connection to the proxy carried both


@pytest.mark.parametrize("target", ["http", "https"])
async def test_alpn_warning_speaks_of_the_targets_tls_only(
    target: str,
    tls_proxy: ProxyLog,
    upstream: Upstream,
    uvicorn_tls: Upstream,
    tls: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A caller's context that offers h2 to an HTTP/1.1-only target warns once, through
    a tunnel too; a request forwarded to an HTTPS proxy (whose TLS is the proxy's, not
    the caller's context) says nothing."""
    given = httpx.Proxy(tls_proxy.url, ssl_context=client_context(tls, ["http/1.1"]))
    target_url = upstream.url if target == "http" else uvicorn_tls.url
    url = f"{target}://{ONLY_PROXY_HOST}:{port_of(target_url)}/"
    transport = PoolTransport(proxy=given, http2=True, verify=client_context(tls))
    with caplog.at_level("WARNING", logger="httpool.transport"):
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(url)
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.1"
    warnings = [r.getMessage() for r in caplog.records if r.name == "httpool.transport"]
    if target == "http":
        assert warnings == []
    else:
        [said] = warnings
        assert "the server chose no HTTP/2 by ALPN" in said
        assert f"https://{ONLY_PROXY_HOST}:{port_of(target_url)} via " in said


async def test_head_bounds_hold_for_forwarded_requests(proxy: ProxyLog, upstream: Upstream) -> None:
    """`max_headers` bounds a response forwarded by a proxy, as on a direct connection."""
    base = f"http://{ONLY_PROXY_HOST}:{port_of(upstream.url)}"
    transport = PoolTransport(proxy=proxy.url, max_headers=2)
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="header"):
            await client.get("/ok")
    assert proxy.forwarded == [f"{base}/ok"]
