"""Waiting for the provider's reset when its answers say the limit is used up."""

from __future__ import annotations

import datetime
import time

import anyio
import httpx
import pytest

import httpool
from httpool._policy._signals import blocked_for, parse_duration

from .stub import Stub

pytestmark = pytest.mark.anyio


def provider(stub: Stub, pool_timeout: float = 5.0, **policy: object) -> httpool.Provider:
    return httpool.Provider(
        "api",
        base_url=stub.url,
        timeout=httpx.Timeout(5.0, pool=pool_timeout),
        **({"max_concurrency": 10} | policy),  # type: ignore[arg-type]
    )


def in_one_second() -> str:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    return when.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"},
        {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "0m1.0s"},
        {"anthropic-ratelimit-requests-remaining": "0"},  # the reset is added below
        {"ratelimit": '"default";r=0;t=1', "ratelimit-policy": '"default";q=100;w=60'},
        {"ratelimit-remaining": "0", "ratelimit-reset": "1"},
    ],
    ids=["openai-requests", "openai-tokens", "anthropic", "ietf", "ietf-draft-6"],
)
async def test_the_next_request_waits_for_the_reset_the_provider_announced(
    stub: Stub, headers: dict[str, str]
) -> None:
    """After an answer that says 0 remaining, resetting in 1 s, the next request is sent
    a second later, not at once."""
    answers = iter([headers])

    def respond(seen: dict[str, object]) -> tuple[int, dict[str, str]]:
        first = next(answers, {})
        if "anthropic-ratelimit-requests-remaining" in first:
            first = first | {"anthropic-ratelimit-requests-reset": in_one_second()}
        return 200, first

    stub.respond = respond
    async with httpool.ClientPool(provider(stub)) as p:
        client = p.client("api")
        await client.get("/a")
        assert p.stats()["api"]["provider_block"]["seconds_left"] > 0.5
        await client.get("/b")
        stats = p.stats()["api"]
    first, second = stub.times()
    assert second - first >= 0.9
    assert stats["limit_wait_seconds"]["provider_reset"] > 0.5


async def test_a_reset_beyond_the_pool_timeout_fails_at_once(stub: Stub) -> None:
    """A reset in 60 s with a 1 s pool timeout: the request fails now, naming the header."""
    stub.plan.append((429, {"retry-after": "60"}))
    async with httpool.ClientPool(provider(stub, pool_timeout=1.0)) as p:
        client = p.client("api")
        assert (await client.get("/a")).status_code == 429
        started = time.monotonic()
        with pytest.raises(httpool.LimitTimeout, match="retry-after resets in") as info:
            await client.get("/b")
        assert time.monotonic() - started < 0.5
        assert info.value.limit == "provider_reset"
    assert len(stub.arrivals) == 1


async def test_a_stub_that_enforces_its_limit_is_not_hammered(stub: Stub) -> None:
    """A provider allowing 10 per second, with OpenAI-style headers: 25 requests, three
    at a time, all succeed, and the remaining-0 answer stops the rest from drawing 429s:
    only the two others in flight at that moment can, in each of the three seconds."""
    stub.limit = (10, 1.0)
    async with httpool.ClientPool(provider(stub, max_concurrency=3, retry=True)) as p:
        client = p.client("api")
        codes: list[int] = []

        async def call() -> None:
            codes.append((await client.get("/a")).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(25):
                group.start_soon(call)
        stats = p.stats()["api"]
    assert codes == [200] * 25
    assert stats["answers"].get("429", 0) <= 2 * 3
    assert stats["answers"]["2xx"] == 25


def test_without_a_policy_nothing_waits() -> None:
    """A provider without any policy piece has no wrapper at all."""
    from httpool._clients import ProviderClients

    clients = ProviderClients(httpool.Provider("api", base_url="http://127.0.0.1:9"))
    assert type(clients.engine).__name__ == "PoolTransport"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1m30.5s", 90.5),
        ("1h", 3600.0),
        ("0.5", 0.5),
        ("", None),
        ("soon", None),
        ("5x", None),
        ("1s2", None),
    ],
)
def test_go_durations(text: str, seconds: float | None) -> None:
    """OpenAI's reset values are Go durations."""
    assert parse_duration(text) == seconds


def answer(status: int, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def test_the_longest_exhausted_limit_wins() -> None:
    """Requests reset in 1 s, tokens in 6 s: wait 6 s, because of the tokens."""
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "6s",
    }
    assert blocked_for(answer(200, headers)) == (6.0, "x-ratelimit-remaining-tokens")


def test_remaining_above_zero_and_unreadable_values_say_nothing() -> None:
    """Only an exhausted limit with a readable reset blocks."""
    assert (
        blocked_for(
            answer(200, {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s"})
        )
        is None
    )
    assert (
        blocked_for(
            answer(
                200, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "later"}
            )
        )
        is None
    )
    assert blocked_for(answer(200, {"retry-after": "5"})) is None  # only with 429/503
    assert blocked_for(answer(200, {})) is None


def test_anthropic_reset_is_an_rfc3339_time() -> None:
    """`anthropic-ratelimit-requests-reset` is a time, read against now."""
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp()
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:07Z",
    }
    assert blocked_for(answer(200, headers), now=now) == (
        7.0,
        "anthropic-ratelimit-requests-remaining",
    )
