"""A short run of the `make stress` scenario, so every test run checks for leaks under faults."""

from __future__ import annotations

import pytest

from .stress.fault_proxy import Faults
from .stress.runner import run


@pytest.mark.anyio
async def test_faults_leak_nothing() -> None:
    """1,500 requests through resets, delays and truncations: only httpx errors, nothing leaked."""
    report = await run(1_500, 100, Faults(reset=0.03, truncate=0.03, delay=0.05, seed=7))
    assert report.unexpected == []
    assert sum(report.outcomes.values()) == 1_500
    assert report.faults["chunks reset"] > 0
    assert report.faults["chunks truncate"] > 0
    assert report.outcomes["status 200"] > 1_200
    assert report.in_use_after == 0
    assert report.waiters_after == 0
    assert report.active_after == 0
    assert report.fds_after <= report.fds_before
