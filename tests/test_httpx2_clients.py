"""httpx2 clients from the pool: one engine per provider for every kind of client."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.

import logging
import sys
from typing import Annotated, Any

import httpx
import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import httpool

from .upstream import Upstream, serve_upstream

pytestmark = pytest.mark.anyio

KINDS = [httpx.AsyncClient, httpx2.AsyncClient]


async def test_an_httpx2_client_shares_the_provider_engine(upstream: Upstream) -> None:
    """httpx and httpx2 clients of one provider use one engine: one connection, one count."""
    provider = httpool.Provider("up", base_url=upstream.url, http2=False)
    async with httpool.ClientPool(provider) as pool:
        client2 = pool.client("up", httpx2.AsyncClient)
        # an httpx2 client, and not an httpx one (whatever mixins stand before it)
        assert isinstance(client2, httpx2.AsyncClient)
        assert not isinstance(client2, httpx.AsyncClient)
        assert (await pool.client("up").get("/a")).status_code == 200
        response = await client2.get("/b")
        assert response.json()["path"] == "/b"
        assert pool.client("up", httpx2.AsyncClient) is client2  # made once
        stats = pool.stats()["up"]
    assert upstream.connections == 1  # the httpx2 request reused the httpx one's connection
    assert stats["connections_opened"] == 1
    assert stats["requests_served"] == 2
    assert stats["requests_in_flight"] == 0
    assert stats["clients"] == ["httpx.AsyncClient", "httpx2.AsyncClient"]


async def test_engine_errors_are_httpx2_exceptions() -> None:
    """A refused connection raises httpx2's ConnectError, not httpx's, on an httpx2 client."""
    with serve_upstream() as gone:
        url = gone.url
    async with httpool.ClientPool(httpool.Provider("down", base_url=url)) as pool:
        with pytest.raises(httpx2.ConnectError):
            await pool.client("down", httpx2.AsyncClient).get("/")


async def test_httpx2_streams_are_counted_until_closed(upstream: Upstream) -> None:
    """A streamed httpx2 response is in flight until it is closed, then drained to 0."""
    async with httpool.ClientPool(httpool.Provider("up", base_url=upstream.url)) as pool:
        client = pool.client("up", httpx2.AsyncClient)
        async with client.stream("GET", "/stream?n=2") as response:
            assert pool.stats()["up"]["requests_in_flight"] == 1
            chunks = [c async for c in response.aiter_bytes()]
        assert b"".join(chunks).count(b"data:") == 2
        assert pool.stats()["up"]["requests_in_flight"] == 0


@pytest.mark.parametrize("kind", KINDS, ids=["httpx", "httpx2"])
async def test_closing_a_pooled_client_from_outside_is_ignored(
    upstream: Upstream, kind: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """aclose() and `async with` from outside leave the pool's client open; warned once."""
    async with httpool.ClientPool(httpool.Provider("up", base_url=upstream.url)) as pool:
        client = pool.client("up", kind)
        with caplog.at_level(logging.WARNING, logger="httpool"):
            await client.aclose()
            await client.aclose()
            async with client:
                pass
        assert not client.is_closed
        assert (await client.get("/still")).status_code == 200
    assert client.is_closed  # the pool closed it
    warnings = [r for r in caplog.records if "belongs to the pool" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize("kind", KINDS, ids=["httpx", "httpx2"])
async def test_credentials_stay_at_their_origin(upstream: Upstream, kind: Any) -> None:
    """A request elsewhere is refused; a redirect elsewhere goes without the credentials."""
    provider = httpool.Provider(
        "up",
        base_url=upstream.url,
        headers={"x-api-key": httpool.Secret("sk-test-123")},
        follow_redirects=True,
    )
    with serve_upstream() as other:
        async with httpool.ClientPool(provider) as pool:
            client = pool.client("up", kind)
            with pytest.raises(httpool.OriginNotAllowedError):
                await client.get(f"{other.url}/direct")
            response = await client.get(f"/redirect?to={other.url}/landed")
            assert response.json()["path"] == "/landed"
            assert "x-api-key" not in response.json()["headers"]
            same = await client.get(f"/redirect?to={upstream.url}/home")
            assert same.json()["headers"]["x-api-key"] == "sk-test-123"
    assert other.requests[0]["path"] == "/landed"


async def test_provider_takes_httpx2_limits_and_timeout(upstream: Upstream) -> None:
    """httpx2's Limits and Timeout configure a provider: no `import httpx` needed."""
    provider = httpool.Provider(
        "up",
        base_url=upstream.url,
        limits=httpx2.Limits(max_connections=3, max_keepalive_connections=2),
        timeout=httpx2.Timeout(7.0, connect=2.0),
    )
    assert provider.limits.max_connections == 3
    assert provider.timeout.connect == 2.0
    assert provider.timeout.read == 7.0
    async with httpool.ClientPool(provider) as pool:
        client = pool.client("up", httpx2.AsyncClient)
        assert client.timeout == httpx2.Timeout(7.0, connect=2.0)
        assert (await client.get("/")).status_code == 200
        assert pool.stats()["up"]["max_connections"] == 3


async def test_transport_httpx_means_httpx2s_own_for_httpx2(upstream: Upstream) -> None:
    """With transport='httpx', an httpx2 client runs on httpx2's own transport."""
    provider = httpool.Provider("up", base_url=upstream.url, transport="httpx")
    async with httpool.ClientPool(provider) as pool:
        client = pool.client("up", httpx2.AsyncClient)
        assert (await client.get("/")).status_code == 200
        assert pool.stats()["up"]["requests_in_flight"] == 0


async def test_an_httpx2_mock_transport_gives_httpx2_clients() -> None:
    """A provider on an httpx2.MockTransport hands out httpx2 clients, and says so for httpx."""
    mock = httpx2.MockTransport(lambda request: httpx2.Response(200, json={"ok": True}))
    provider = httpool.Provider("m", base_url="https://api.example.com", transport=mock)
    async with httpool.ClientPool(provider) as pool:
        assert (await pool.client("m", httpx2.AsyncClient).get("/")).json() == {"ok": True}
        with pytest.raises(httpool.ConfigError, match="httpx2 transport"):
            pool.client("m")


async def test_an_httpx_mock_refuses_httpx2_clients_by_name() -> None:
    """An httpx transport object cannot serve httpx2 clients: the error says what to do."""
    mock = httpx.MockTransport(lambda request: httpx.Response(204))
    provider = httpool.Provider("m", base_url="https://api.example.com", transport=mock)
    async with httpool.ClientPool(provider) as pool:
        with pytest.raises(httpool.ConfigError, match="httpx2.MockTransport"):
            pool.client("m", httpx2.AsyncClient)


async def test_without_httpx2_the_error_names_the_extra(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asking for an httpx2 client without httpx2 installed names `httpool[httpx2]`."""
    async with httpool.ClientPool(httpool.Provider("up", base_url=upstream.url)) as pool:
        monkeypatch.setitem(sys.modules, "httpx2", None)  # as if not installed
        with pytest.raises(ImportError, match=r"pip install 'httpool\[httpx2\]'"):
            pool.client("up", httpx2.AsyncClient)


def test_httpx2_clients_in_routes(upstream: Upstream) -> None:
    """`httpool.client(name, httpx2.AsyncClient)` and the sync httpx2 client in routes."""
    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream.url)))
    Up2 = Annotated[httpx2.AsyncClient, httpool.client("up", httpx2.AsyncClient)]  # noqa: N806
    SyncUp2 = Annotated[httpx2.Client, httpool.sync_client("up", httpx2.Client)]  # noqa: N806

    @app.get("/async")
    async def use_async(client: Up2) -> Any:
        kind = isinstance(client, httpx2.AsyncClient)
        return {"httpx2": kind, **(await client.get("/x")).json()}

    @app.get("/sync")
    def use_sync(client: SyncUp2) -> Any:
        return {"httpx2": isinstance(client, httpx2.Client), **client.get("/y").json()}

    with TestClient(app) as test:
        first = test.get("/async").json()
        second = test.get("/sync").json()
        pool = httpool.get_pool(test)
        assert pool.stats()["up"]["requests_in_flight"] == 0
    assert (first["httpx2"], first["path"]) == (True, "/x")
    assert (second["httpx2"], second["path"]) == (True, "/y")
    assert repr(httpool.client("up", httpx2.AsyncClient).dependency) == (
        "httpool.client('up', httpx2.AsyncClient)"
    )


async def test_a_stream_a_route_leaves_open_is_closed_after_the_response(
    upstream: Upstream,
) -> None:
    """The dependency closes what the route left open, and resets its context variable."""
    from asgi_lifespan import LifespanManager

    from httpool._clients import open_streams

    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("up", base_url=upstream.url)))
    Up2 = Annotated[httpx2.AsyncClient, httpool.client("up", httpx2.AsyncClient)]  # noqa: N806

    @app.get("/leak")
    async def leak(client: Up2) -> dict[str, int]:
        request = client.build_request("GET", "/stream?n=50&delay=0.05")
        await client.send(request, stream=True)  # never closed by the route
        return {"opened": 1}

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as test:
            assert (await test.get("/leak")).json() == {"opened": 1}
            assert open_streams.get() is None
            pool = httpool.get_pool(app)
            assert pool.stats()["up"]["requests_in_flight"] == 0


async def test_the_policy_serves_every_kind(upstream: Upstream) -> None:
    """Retries and the concurrency limit are the provider's: httpx2 requests count in them."""
    provider = httpool.Provider(
        "up",
        base_url=upstream.url,
        retry=httpool.Retry(attempts=2, backoff_initial=0.01, backoff_max=0.01),
        max_concurrency=4,
    )
    async with httpool.ClientPool(provider) as pool:
        response = await pool.client("up", httpx2.AsyncClient).get("/status?code=503")
        assert response.status_code == 503
        assert (await pool.client("up").get("/status?code=503")).status_code == 503
        stats = pool.stats()["up"]
    assert stats["retries_by_reason"] == {"503": 2}
    assert stats["answers"]["5xx"] == 4
    assert stats["concurrency"]["limit"] == 4


async def test_wrong_kinds_and_options_are_named(upstream: Upstream) -> None:
    """Unknown kinds, an httpx.Auth, a proxy on httpx2's own transport: clear errors."""
    plain = httpool.Provider("up", base_url=upstream.url)
    with_auth = httpool.Provider(
        "authed", base_url=upstream.url, auth=httpx.BasicAuth("u", "p"), transport="httpx"
    )
    proxied = httpool.Provider(
        "proxied", base_url=upstream.url, transport="httpx", proxy="http://127.0.0.1:9"
    )
    async with httpool.ClientPool(plain, with_auth, proxied) as pool:
        with pytest.raises(TypeError, match="unknown kind of client"):
            pool.client("up", dict)  # type: ignore[arg-type]  # a wrong kind on purpose
        with pytest.raises(httpool.ConfigError, match=r"httpx\.Auth"):
            pool.client("authed", httpx2.AsyncClient)
        with pytest.raises(httpool.ConfigError, match="proxy"):
            pool.client("proxied", httpx2.AsyncClient)
        with pytest.raises(httpool.ConfigError, match="proxy"):
            pool.sync_client("proxied", httpx2.Client)
        assert repr(pool.client("up", httpx2.AsyncClient)) == "<httpool httpx2 client 'up'>"
        sync = pool.sync_client("up", httpx2.Client)
        assert repr(sync) == "<httpool httpx2 sync client 'up'>"
        sync.close()  # refused: the pool owns it
        with sync:
            pass
        assert sync.get("/s").status_code == 200


def test_a_policy_needs_an_engine_it_can_wrap() -> None:
    """Retries or limits on an httpx2 transport object are refused, naming the fields."""
    mock = httpx2.MockTransport(lambda request: httpx2.Response(200))
    provider = httpool.Provider("m", base_url="https://a.test", transport=mock, retry=True)
    pool = httpool.ClientPool(provider)
    import anyio

    with pytest.raises(httpool.ConfigError, match="rate_limit"):
        anyio.run(pool.open)
