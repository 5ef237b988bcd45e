"""`httpool.router()`: stats, health, metrics and the status page against a real upstream."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.

import math
import re
import socket
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import httpool

from .upstream import Upstream

KEY = "Bearer sk-router-test-0123456789"
Up = Annotated[httpx.AsyncClient, httpool.client("up")]


@pytest.fixture
def prometheus() -> Any:
    """prometheus_client, or a skip when the `httpool[prometheus]` extra is not installed."""
    return pytest.importorskip("prometheus_client")


def parse(text: str) -> dict[str, Any]:
    """The metric families of a Prometheus text exposition, by name."""
    from prometheus_client.parser import text_string_to_metric_families

    return {family.name: family for family in text_string_to_metric_families(text)}


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_app(*providers: httpool.Provider, **router_kwargs: Any) -> FastAPI:
    """An app with the given providers, a `/call/{name}` route and the router at /httpool."""
    app = FastAPI(lifespan=httpool.lifespan(*providers))
    app.include_router(httpool.router(prefix="/httpool", **router_kwargs))

    @app.get("/call/{name}")
    async def call(name: str, path: str = "/v1/ping") -> Any:
        pool = httpool.get_pool(app)
        try:
            response = await pool.client(name).get(path)
        except httpx.TransportError as exc:
            return {"error": type(exc).__name__}
        return {"status": response.status_code}

    return app


def up(upstream: Upstream, name: str = "up", **kwargs: Any) -> httpool.Provider:
    """A provider named `name` on the test upstream, with a secret header."""
    return httpool.Provider(
        name, base_url=upstream.url, headers={"Authorization": httpool.Secret(KEY)}, **kwargs
    )


@pytest.fixture
def client(upstream: Upstream, closed_port: int) -> Iterator[TestClient]:
    """A running app with a healthy provider, one without health_path and a dead one."""
    app = make_app(
        up(upstream, health_path="/ping"),
        up(upstream, "quiet"),
        httpool.Provider("dead", base_url=f"http://127.0.0.1:{closed_port}", transport="httpool"),
    )
    with TestClient(app) as test_client:
        yield test_client


def test_stats_returns_the_pool_stats(client: TestClient) -> None:
    """`/stats` is the running pool's `stats()`, with counters that follow the traffic."""
    for _ in range(5):
        assert client.get("/call/up").json() == {"status": 200}
    assert client.get("/call/dead").json() == {"error": "ConnectError"}
    response = client.get("/httpool/stats")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    stats = response.json()
    assert stats == httpool.get_pool(client).stats()
    assert list(stats) == ["up", "quiet", "dead"]
    assert stats["up"]["requests_served"] == 5
    assert stats["up"]["connections_open"] == 1
    assert stats["up"]["connections_idle"] == 1
    assert stats["dead"]["errors"] == {"ConnectError": 1}
    assert "sk-router" not in response.text


def test_health_all_ok_lists_skipped_providers(upstream: Upstream) -> None:
    """Every provider with a health_path answering 2xx gives 200; the others are skipped."""
    app = make_app(
        up(upstream, health_path="/ping"),
        up(upstream, "b", health_path="/v1/ping"),
        up(upstream, "c"),
    )
    with TestClient(app) as client:
        response = client.get("/httpool/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert list(body["providers"]) == ["up", "b", "c"]
    for name in ("up", "b"):
        result = body["providers"][name]
        assert result["ok"] is True
        assert result["status"] == "ok"
        assert result["status_code"] == 200
        assert 0 <= result["latency_ms"] < 2000
        assert "error" not in result
    assert body["providers"]["c"] == {"status": "skipped"}
    assert {r["path"] for r in upstream.requests} == {"/ping", "/v1/ping"}
    assert all(r["headers"]["authorization"] == KEY for r in upstream.requests)


def test_health_one_failing_gives_503(upstream: Upstream) -> None:
    """A provider whose health_path answers 503 fails the check; no URL or header is shown."""
    app = make_app(
        up(upstream, health_path="/ping"),
        up(upstream, "sick", health_path="/status?code=503"),
    )
    with TestClient(app) as client:
        response = client.get("/httpool/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["providers"]["up"]["ok"] is True
    assert body["providers"]["sick"] == {
        "status": "fail",
        "ok": False,
        "status_code": 503,
        "latency_ms": body["providers"]["sick"]["latency_ms"],
    }
    for hidden in ("code=", "/status", "sk-router", "127.0.0.1"):
        assert hidden not in response.text


def test_health_unreachable_and_slow_providers_fail_in_time(
    upstream: Upstream, closed_port: int
) -> None:
    """A refused connection and an answer slower than health_timeout both fail, quickly."""
    app = make_app(
        httpool.Provider(
            "dead", base_url=f"http://127.0.0.1:{closed_port}/v1?token=x", health_path="/h"
        ),
        up(upstream, "slow", health_path="/slow?s=1.2"),
        health_timeout=0.3,
    )
    with TestClient(app) as client:
        start = time.monotonic()
        response = client.get("/httpool/health")
        elapsed = time.monotonic() - start
    assert response.status_code == 503
    providers = response.json()["providers"]
    assert providers["dead"]["error"] == "ConnectError"
    assert providers["dead"]["status_code"] is None
    assert providers["slow"]["error"] == "timeout"
    assert 250 <= providers["slow"]["latency_ms"] < 2000
    assert elapsed < 2.0, "the checks run concurrently, each bounded by health_timeout"
    assert "token" not in response.text


def test_routes_without_a_running_pool_answer_503() -> None:
    """Without httpool's lifespan the routes answer 503 saying how to set it up."""
    app = FastAPI()
    app.include_router(httpool.router(prefix="/ops"))
    with TestClient(app) as client:
        for path in ("/ops/stats", "/ops/health", "/ops/metrics"):
            response = client.get(path)
            assert response.status_code == 503
            assert "httpool.lifespan" in response.json()["detail"]


@pytest.mark.usefixtures("prometheus")
def test_metrics_parse_as_prometheus_text(client: TestClient) -> None:
    """`/metrics` exposes gauges and counters per provider that the Prometheus parser reads."""
    for _ in range(3):
        client.get("/call/up")
    client.get("/call/dead")
    response = client.get("/httpool/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = parse(response.text)

    def value(family: str, **labels: str) -> float:
        samples = [s for s in families[family].samples if s.labels == labels]
        assert len(samples) == 1, (family, labels, families[family].samples)
        return float(samples[0].value)

    assert families["httpool_connections_open"].type == "gauge"
    assert families["httpool_requests_served"].type == "counter"
    assert value("httpool_connections_open", provider="up") == 1
    assert value("httpool_connections_idle", provider="up") == 1
    assert value("httpool_connections_in_use", provider="up") == 0
    assert value("httpool_connections_max", provider="up") == 100
    assert value("httpool_waiters", provider="up") == 0
    assert value("httpool_requests_in_flight", provider="up") == 0
    assert value("httpool_requests_served", provider="up") == 3
    assert value("httpool_connections_opened", provider="up") == 1
    assert value("httpool_errors", provider="dead", kind="ConnectError") == 1
    assert (
        value("httpool_provider_info", provider="up", transport="PoolTransport", http2="True") == 1
    )
    assert "sk-router" not in response.text


@pytest.mark.usefixtures("prometheus")
def test_metrics_speak_openmetrics_when_asked(client: TestClient) -> None:
    """A scraper that accepts OpenMetrics gets it, ending with `# EOF`."""
    response = client.get(
        "/httpool/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_metrics_leave_the_global_registry_alone(client: TestClient, prometheus: Any) -> None:
    """Scraping registers nothing in prometheus_client's default registry."""
    assert client.get("/httpool/metrics").status_code == 200
    assert b"httpool_" not in prometheus.generate_latest(prometheus.REGISTRY)


@pytest.mark.usefixtures("prometheus")
def test_metrics_skip_counters_a_transport_does_not_report(upstream: Upstream) -> None:
    """With httpx's own transport there are no connection samples, only the provider info."""
    with TestClient(make_app(up(upstream, transport="httpx"))) as client:
        text = client.get("/httpool/metrics").text
    families = parse(text)
    assert families["httpool_provider_info"].samples[0].labels["transport"] == "AsyncHTTPTransport"
    assert families["httpool_connections_max"].samples[0].value == 100
    assert families["httpool_connections_open"].samples == []


def test_metrics_without_prometheus_client_answer_501(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When prometheus-client cannot be imported, `/metrics` answers 501 naming the extra."""
    for name in [m for m in sys.modules if m.split(".")[0] == "prometheus_client"]:
        monkeypatch.setitem(sys.modules, name, None)
    with TestClient(make_app(up(upstream))) as client:
        response = client.get("/httpool/metrics")
        assert client.get("/httpool/stats").status_code == 200
    assert response.status_code == 501
    assert "pip install 'httpool[prometheus]'" in response.text


def test_optional_routes_can_be_left_out(upstream: Upstream) -> None:
    """`metrics=False` and `status_page=False` leave those routes out."""
    app = make_app(up(upstream), metrics=False, status_page=False)
    with TestClient(app) as client:
        assert client.get("/httpool/metrics").status_code == 404
        assert client.get("/httpool/").status_code == 404
        assert client.get("/httpool/stats").status_code == 200
    paths = set(app.openapi()["paths"])
    assert paths == {"/call/{name}", "/httpool/stats", "/httpool/health"}


def test_status_page_is_self_contained_html(client: TestClient) -> None:
    """The page is HTML with only its own hashed inline script and style, and reads `stats`."""
    response = client.get("/httpool/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="en">' in html
    assert "<title>httpool status</title>" in html
    assert 'fetch(base + "stats"' in html
    assert re.search(r"(src|href)=\"?(https?:)?//", html) is None, "no external assets"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", policy)
    assert "unsafe-inline" not in policy
    assert client.get("/httpool", follow_redirects=False).status_code == 307
    assert "/httpool/" not in client.get("/openapi.json").json()["paths"]


def test_pool_collector_reads_the_app_pool_while_it_runs(
    upstream: Upstream, prometheus: Any
) -> None:
    """`PoolCollector(app)` in an app's own registry has samples only while the pool runs."""
    app = make_app(up(upstream))
    registry = prometheus.CollectorRegistry()
    registry.register(httpool.PoolCollector(app))
    assert b"httpool_connections_open" not in prometheus.generate_latest(registry)
    with TestClient(app) as client:
        client.get("/call/up")
        text = prometheus.generate_latest(registry).decode()
    assert 'httpool_requests_served_total{provider="up"} 1.0' in text


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf])
def test_router_refuses_a_bad_health_timeout(bad: float) -> None:
    """A health_timeout that is not a positive number of seconds fails at construction."""
    with pytest.raises(httpool.ConfigError, match="health_timeout"):
        httpool.router(health_timeout=bad)
