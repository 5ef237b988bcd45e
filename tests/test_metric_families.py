"""The Prometheus families made from `pool.stats()`: values that are not numbers are left
out, and the state of a rate limit shared through Redis is one gauge per state."""

from __future__ import annotations

from typing import Any

from httpool._ops._metrics import metric_families


def samples(stats: dict[str, Any], family: str) -> dict[tuple[str, ...], float]:
    """The samples of one family, by their label values."""
    for made in metric_families(stats):
        if made.name == family:
            return {tuple(s.labels.values()): s.value for s in made.samples}
    raise AssertionError(f"no family {family!r}")


def test_error_counts_that_are_not_numbers_are_left_out() -> None:
    """Only numeric counts become samples, each labelled with its kind."""
    stats = {"up": {"errors": {"ReadTimeout": 2, "ConnectError": None, "Odd": "many"}}}
    assert samples(stats, "httpool_errors") == {("up", "ReadTimeout"): 2.0}


def test_a_rate_limit_shared_through_redis_shows_its_storage_state() -> None:
    """A Redis-backed limit has one storage gauge per state, 1 for the current one; an
    in-memory one has none."""
    stats = {
        "shared": {"rate_limit": {"storage": "redis", "state": "fallback", "waiting": 3}},
        "local": {"rate_limit": {"storage": "memory", "waiting": 0}},
    }
    storage = samples(stats, "httpool_rate_limit_storage")
    assert storage[("shared", "fallback")] == 1.0
    assert {value for key, value in storage.items() if key[1] != "fallback"} == {0.0}
    assert {key[0] for key in storage} == {"shared"}
    waiting = samples(stats, "httpool_limit_waiting")
    assert waiting == {("shared", "rate_limit"): 3.0, ("local", "rate_limit"): 0.0}
