"""Retries of answers: which are retried, how long the waits are, and the retry budget."""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest

import httpool
from httpool._policy._retry import parse_retry_after

from .stub import Stub

pytestmark = pytest.mark.anyio

FAST = httpool.Retry(backoff_initial=0.001, backoff_max=0.002)


def pool(stub: Stub, **policy: object) -> httpool.ClientPool:
    return httpool.ClientPool(httpool.Provider("api", base_url=stub.url, **policy))  # type: ignore[arg-type]


async def test_a_burst_against_429_retry_after_succeeds_after_the_wait_and_not_sooner(
    stub: Stub,
) -> None:
    """Five concurrent requests answered 429 Retry-After: 1 are retried a second later."""
    stub.plan.extend([(429, {"retry-after": "1"})] * 5)
    results: dict[str, int] = {}
    async with pool(stub, retry=True) as p:
        client = p.client("api")

        async def call(i: int) -> None:
            response = await client.get("/v1/x", headers={"x-req-id": str(i)})
            results[str(i)] = response.status_code

        async with anyio.create_task_group() as group:
            for i in range(5):
                group.start_soon(call, i)
        stats = p.stats()["api"]
    assert results == {str(i): 200 for i in range(5)}
    for times in stub.by_id().values():
        assert len(times) == 2
        assert times[1] - times[0] >= 1.0
    assert stats["retries_by_reason"] == {"429": 5}
    assert stats["answers"] == {"4xx": 5, "429": 5, "2xx": 5}


async def test_post_is_not_retried_on_502_without_an_idempotency_key(stub: Stub) -> None:
    """A 502 to a POST reaches the caller; with an Idempotency-Key it is retried."""
    stub.plan.extend([(502, {}), (502, {})])
    async with pool(stub, retry=FAST) as p:
        client = p.client("api")
        first = await client.post("/v1/chat", json={"q": 1})
        assert first.status_code == 502
        assert len(stub.arrivals) == 1
        second = await client.post("/v1/chat", json={"q": 1}, headers={"Idempotency-Key": "k1"})
        assert second.status_code == 200
        assert len(stub.arrivals) == 3
        stub.plan.append((502, {}))
        third = await client.get("/v1/models")
        assert third.status_code == 200
        assert len(stub.arrivals) == 5


async def test_post_is_retried_on_429_503_and_529(stub: Stub) -> None:
    """The server did not process these, so a POST is sent again."""
    stub.plan.extend([(429, {}), (503, {}), (529, {})])
    retry = httpool.Retry(attempts=4, backoff_initial=0.001, backoff_max=0.002)
    async with pool(stub, retry=retry) as p:
        response = await p.client("api").post("/v1/chat", json={})
        stats = p.stats()["api"]
    assert response.status_code == 200
    assert stats["retries_by_reason"] == {"429": 1, "503": 1, "529": 1}


async def test_the_final_answer_is_returned_as_the_caller_would_get_it(stub: Stub) -> None:
    """After the last attempt, the 503 itself comes back, body readable."""
    stub.plan.extend([(503, {"x-n": str(i)}) for i in range(3)])
    async with pool(stub, retry=FAST) as p:
        response = await p.client("api").get("/v1/x")
    assert response.status_code == 503
    assert response.headers["x-n"] == "2"
    assert response.json() == {"status": 503}
    assert len(stub.arrivals) == 3


async def test_discarded_answers_are_closed(stub: Stub) -> None:
    """With one connection, a retry only gets through if the discarded answer let it go."""
    stub.plan.extend([(503, {}), (503, {})])
    provider = httpool.Provider(
        "api",
        base_url=stub.url,
        retry=FAST,
        limits=httpx.Limits(max_connections=1),
        timeout=httpx.Timeout(5.0, pool=0.5),
    )
    async with httpool.ClientPool(provider) as p:
        response = await p.client("api").get("/v1/x")
    assert response.status_code == 200


async def test_x_should_retry_is_obeyed_both_ways(stub: Stub) -> None:
    """`x-should-retry: false` stops a 503's retry; `true` retries a 400."""
    stub.plan.extend([(503, {"x-should-retry": "false"}), (400, {"x-should-retry": "true"})])
    async with pool(stub, retry=FAST) as p:
        client = p.client("api")
        assert (await client.get("/a")).status_code == 503
        assert (await client.post("/b")).status_code == 200
        stats = p.stats()["api"]
    assert len(stub.arrivals) == 3
    assert stats["retries_by_reason"] == {"should_retry": 1}


async def test_a_retry_after_above_the_ceiling_returns_at_once(stub: Stub) -> None:
    """Retry-After: 120 over a ceiling of 60 s: the 429 comes back without sleeping."""
    stub.plan.append((429, {"retry-after": "120"}))
    async with pool(stub, retry=True) as p:
        started = time.monotonic()
        response = await p.client("api").get("/a")
        elapsed = time.monotonic() - started
        stats = p.stats()["api"]
    assert response.status_code == 429
    assert elapsed < 1.0
    assert stats["not_retried"] == {"retry_after_too_long": 1}


async def test_a_retry_never_goes_past_the_requests_timeout_budget(stub: Stub) -> None:
    """With a 0.5 s budget, a Retry-After of 1 s is not waited for."""
    stub.plan.append((503, {"retry-after": "1"}))
    async with pool(stub, retry=httpool.Retry(timeout=0.5)) as p:
        started = time.monotonic()
        response = await p.client("api").get("/a")
        elapsed = time.monotonic() - started
        stats = p.stats()["api"]
    assert response.status_code == 503
    assert elapsed < 0.5
    assert stats["not_retried"] == {"deadline": 1}


async def test_a_streamed_request_body_is_never_retried(stub: Stub) -> None:
    """A body from an async iterator cannot be sent twice: the 503 is returned."""
    stub.plan.append((503, {}))

    async def body() -> AsyncIterator[bytes]:
        yield b"chunk"

    async with pool(stub, retry=FAST) as p:
        response = await p.client("api").post("/a", content=body())
        stats = p.stats()["api"]
    assert response.status_code == 503
    assert len(stub.arrivals) == 1
    assert stats["not_retried"] == {"streamed_body": 1}


async def test_the_retry_budget_caps_retries_in_an_outage(stub: Stub) -> None:
    """Every answer is 503: retries stay within 20 % of the requests, not 200 %."""
    stub.respond = lambda seen: (503, {})
    retry = httpool.Retry(backoff_initial=0.001, backoff_max=0.001, budget_min=2)
    async with pool(stub, retry=retry) as p:
        client = p.client("api")
        for _ in range(50):
            assert (await client.get("/a")).status_code == 503
        stats = p.stats()["api"]
    retries = sum(stats["retries_by_reason"].values())
    assert len(stub.arrivals) == 50 + retries
    assert 2 <= retries <= 2 + 0.2 * 50
    assert stats["not_retried"]["budget"] >= 30


async def test_retry_is_off_by_default(stub: Stub) -> None:
    """Without `retry`, a 503 reaches the caller after one attempt."""
    stub.plan.append((503, {}))
    async with pool(stub) as p:
        assert (await p.client("api").get("/a")).status_code == 503
    assert len(stub.arrivals) == 1


async def test_connect_errors_are_retried_then_raised() -> None:
    """Nothing listens: each attempt fails to connect; the last error is raised."""
    with socket_closed_port() as port:
        provider = httpool.Provider("api", base_url=f"http://127.0.0.1:{port}", retry=FAST)
        async with httpool.ClientPool(provider) as p:
            with pytest.raises(httpx.ConnectError):
                await p.client("api").get("/a")
            stats = p.stats()["api"]
    assert stats["retries_by_reason"] == {"connect": 2}


def socket_closed_port() -> contextlib.AbstractContextManager[int]:
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed() -> Iterator[int]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        yield port

    return closed()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    """Seconds, milliseconds (first), and unreadable values."""
    assert parse_retry_after(httpx.Headers(headers)) == expected


def test_retry_after_as_an_http_date() -> None:
    """An HTTP date ten seconds ahead is ten seconds."""
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 10, usegmt=True)
    assert parse_retry_after(httpx.Headers({"retry-after": date}), now=now) == 10.0


def test_backoff_is_full_jitter_doubling_to_the_ceiling() -> None:
    """Waits lie in [0, min(8, 0.5 * 2**(n-1))]."""
    retry = httpool.Retry()
    for n, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (9, 8.0)]:
        waits = [retry.backoff(n) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"statuses": {700}}, "statuses"),
        ({"budget_ratio": 2}, "budget_ratio"),
        ({"backoff_max": -1}, "backoff_max"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_retry_settings_name_the_field(kwargs: dict[str, object], field: str) -> None:
    """A `Retry` that cannot work fails at construction, naming the field."""
    with pytest.raises(httpool.ConfigError, match=field):
        httpool.Retry(**kwargs)  # type: ignore[arg-type]


def test_bad_retry_value_on_the_provider_names_the_field() -> None:
    """`retry=3` is refused with the field's name."""
    with pytest.raises(httpool.ConfigError, match=r"Provider\('api'\)\.retry"):
        httpool.Provider("api", retry=3)  # type: ignore[arg-type]


async def test_the_providers_retry_post_lets_a_post_be_retried_on_502(stub: Stub) -> None:
    """`Provider(retry_post=True)` says the API takes POSTs twice: the retry policy does too."""
    stub.plan.append((502, {}))
    async with pool(stub, retry=FAST, retry_post=True) as p:
        assert (await p.client("api").post("/v1/chat", json={})).status_code == 200
    assert len(stub.arrivals) == 2
