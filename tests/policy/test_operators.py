"""What operators see of the policy: stats and Prometheus metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import httpool

from .stub import Stub

pytestmark = pytest.mark.anyio


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample named `name` with exactly these labels."""
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels == {"provider": "api", **labels}
    ]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


async def test_stats_and_metrics_count_answers_retries_waits_and_the_breaker(stub: Stub) -> None:
    """A retried 429, a 503 returned, waits on the rate limit, an open breaker: each is in
    `pool.stats()` and in `/metrics`."""
    stub.plan.extend([(429, {}), (200, {}), (503, {"x-should-retry": "false"}), (200, {})])
    provider = httpool.Provider(
        "api",
        base_url=stub.url,
        retry=httpool.Retry(backoff_initial=0.001, backoff_max=0.001),
        rate_limit="2/second",
        max_concurrency=2,
        breaker=httpool.Breaker(failures=3, cooldown=30.0),
    )
    async with httpool.ClientPool(provider) as p:
        client = p.client("api")
        assert (await client.get("/a")).status_code == 200  # after one retry
        assert (await client.get("/a")).status_code == 503  # waits for the rate limit
        assert (await client.get("/a")).status_code == 200
        stub.respond = lambda seen: (500, {})
        await client.post("/a")
        await client.post("/a")
        stats = p.stats()["api"]
        registry = CollectorRegistry()
        registry.register(httpool.PoolCollector(p))
        text = generate_latest(registry).decode()
    assert stats["answers"] == {"4xx": 1, "429": 1, "2xx": 2, "5xx": 3, "503": 1}
    assert stats["retries_by_reason"] == {"429": 1}
    assert stats["limit_wait_seconds"]["rate_limit"] > 0.3
    assert stats["breaker"]["state"] == "open"
    assert stats["transport"] == "PoolTransport"
    assert sample(text, "httpool_answers_total", status="429") == 1
    assert sample(text, "httpool_answers_total", status="5xx") == 3
    assert sample(text, "httpool_retries_by_reason_total", reason="429") == 1
    assert sample(text, "httpool_limit_wait_seconds_total", limit="rate_limit") > 0.3
    assert sample(text, "httpool_limit_waiting", limit="concurrency") == 0
    assert sample(text, "httpool_breaker_state", state="open") == 1
    assert sample(text, "httpool_breaker_state", state="closed") == 0
    assert sample(text, "httpool_breaker_opened_total") == 1
    assert sample(text, "httpool_requests_served_total") == 6
