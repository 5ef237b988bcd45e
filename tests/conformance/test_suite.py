"""The conformance verdict: what makes `make conformance` fail, and the expected-failure list."""

from __future__ import annotations

from pathlib import Path

import pytest

from .suite import Run, compare, load_expected

A, B, C = "tests/a.py::test_a", "tests/b.py::test_b[asyncio]", "tests/c.py::test_c"


def run(built: int = 1, exit_code: int = 1, **outcomes: str) -> Run:
    """A run whose outcomes are given as `a="passed"`, ... for the node ids above."""
    ids = {"a": A, "b": B, "c": C}
    return Run({ids[k]: v for k, v in outcomes.items()}, [], exit_code, built)


def test_the_list_in_the_repository_parses_with_a_reason_each() -> None:
    """Every listed node id has a reason, and none is listed twice."""
    expected = load_expected()
    assert expected
    assert all(reason for reason in expected.values())


def test_same_outcomes_and_listed_failures_pass() -> None:
    """Failing on both, or listed and failing only on PoolTransport, is accepted."""
    verdict = compare(
        run(a="passed", b="passed", c="failed"),
        run(a="passed", b="failed", c="failed"),
        {B: "reason"},
    )
    assert verdict.ok, verdict.problems
    assert verdict.both_failed == [C]


def test_an_unlisted_regression_fails() -> None:
    """A test that passes on the stock transport and fails on PoolTransport fails the run."""
    verdict = compare(run(a="passed", b="passed"), run(a="passed", b="failed"), {})
    assert verdict.problems == [f"{B} fails on PoolTransport and passes on the stock transport"]


def test_a_listed_test_that_passes_fails() -> None:
    """The list stays honest: a listed test that passes on PoolTransport fails the run."""
    verdict = compare(run(a="passed"), run(a="passed"), {A: "reason"})
    assert verdict.problems == [f"listed, passed on PoolTransport: remove it from the list: {A}"]


def test_a_listed_test_failing_on_stock_too_or_not_run_fails() -> None:
    """A listed test must fail on PoolTransport only, and must be run."""
    verdict = compare(run(a="failed"), run(a="failed"), {A: "reason", C: "reason"})
    assert verdict.problems == [
        f"listed, failed on the stock transport too, so not a PoolTransport failure: {A}",
        f"listed, not run on PoolTransport: {C} (reason)",
    ]


def test_a_test_lost_on_pool_or_a_broken_run_fails() -> None:
    """A test passing on stock but missing on PoolTransport, a crash, or no swap fails."""
    assert compare(run(a="passed", b="passed"), run(a="passed"), {}).problems
    assert compare(run(a="passed"), run(exit_code=3, a="passed"), {}).problems
    assert compare(run(a="passed"), run(built=0, a="passed"), {}).problems


def test_a_line_without_reason_is_refused(tmp_path: Path) -> None:
    """Each entry needs ' # reason'."""
    listed = tmp_path / "expected.txt"
    listed.write_text(f"# comment\n\n{A}\n")
    with pytest.raises(ValueError, match="give a reason"):
        load_expected(listed)
