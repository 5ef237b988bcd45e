"""Checks of ``--baseline``: the export, the import check, the round order, the fresh
processes of each round and the ratios.

Not in the project's test paths (the bench is not part of the package); run them with
``.venv/bin/pytest bench/test_baseline.py``.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from bench import client_level
from bench.baseline import (
    check_import,
    comparison,
    current_tree,
    export,
    pooled,
    round_order,
    round_seed,
)
from bench.procs import ROOT, Child
from bench.servers import Upstream
from bench.settings import QUICK


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def test_export_writes_the_revisions_package(tmp_path: Path) -> None:
    first = _git("rev-list", "--max-parents=0", "HEAD").splitlines()[0]
    tree = export(first, tmp_path / "old")
    assert tree.label == f"httpool@{first}"
    assert tree.commit == _git("rev-parse", first)
    assert tree.src == tmp_path / "old" / "src"
    exported = sorted(p.name for p in (tree.src / "httpool").iterdir())
    assert exported == sorted(_git("ls-tree", "--name-only", f"{first}:src/httpool").split())
    # the first commit's package, not today's: their file lists differ
    assert exported != sorted(p.name for p in (ROOT / "src" / "httpool").iterdir())


def test_export_refuses_an_unknown_revision(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no-such-revision"):
        export("no-such-revision", tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_process_with_the_tree_on_its_path_imports_it(tmp_path: Path) -> None:
    tree = export("HEAD", tmp_path / "old")
    env = {"PATH": "/usr/bin:/bin", **tree.env}
    found = subprocess.run(
        [sys.executable, "-c", "import httpool; print(httpool.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    ).stdout.strip()
    check_import(tree, "the child", found)  # the export wins over the installed httpool
    with pytest.raises(RuntimeError, match="should import httpool from"):
        check_import(current_tree(), "the child", found)
    with pytest.raises(RuntimeError, match="should import httpool from"):
        check_import(tree, "this process", str(ROOT / "src" / "httpool" / "__init__.py"))


def test_rounds_swap_httpool_and_the_baseline_every_other_round() -> None:
    labels = ["httpool", "httpool@old", "httpx", "aiohttp"]
    assert round_order(labels, 0, "httpool@old") == labels
    assert round_order(labels, 1, "httpool@old") == ["httpool@old", "httpool", "httpx", "aiohttp"]
    assert round_order(labels, 2, "httpool@old") == labels
    assert round_order(labels, 1, None) == labels


def test_comparison_divides_medians_and_pairs_rounds() -> None:
    rounds = {
        "httpool": [{"rps": 100.0}, {"rps": 120.0}, {"rps": 90.0}],
        "httpool@old": [{"rps": 50.0}, {"rps": 60.0}, {"rps": 100.0}],
        "aiohttp": [{"rps": 200.0}, {"rps": 200.0}, {"rps": 400.0}],
    }
    got = comparison("httpool", rounds, "httpool@old")
    assert got["over_baseline"] == 100 / 60
    assert got["over_aiohttp"] == 100 / 200
    assert got["over_baseline_rounds"] == [2.0, 2.0, 0.9]
    assert math.isnan(
        comparison("httpool", {**rounds, "aiohttp": []}, "httpool@old")["over_aiohttp"]
    )


def test_pooled_is_the_geometric_mean_with_an_interval() -> None:
    mean, low, high = pooled([2.0, 0.5, 1.0, 1.0])
    assert mean == pytest.approx(1.0)
    assert low < 1.0 < high
    assert pooled([1.1, 1.1, 1.1]) == pytest.approx((1.1, 1.1, 1.1))
    assert math.isnan(pooled([1.2])[1])
    assert all(math.isnan(v) for v in pooled([math.nan]))


def test_round_seeds_are_fixed_valid_and_differ_from_round_to_round() -> None:
    seeds = [round_seed(cell, r) for cell in range(14) for r in range(12)]
    assert seeds == [round_seed(cell, r) for cell in range(14) for r in range(12)]
    assert all(1 <= seed <= 2**32 - 1 for seed in seeds)  # what PYTHONHASHSEED accepts
    assert len(set(seeds)) == len(seeds)


class _Worker:
    """Answers the load generator's `rps` command with a figure, recording the calls."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log

    def call(self, command: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        self.log.append((self.name, command["variant"]))
        return {"rps": 100.0, "warmup_s": 0.1, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0,
                "error_kinds": []}  # fmt: skip


class _Trees:
    """`FreshProcesses` that hands out recording workers and notes starts and stops."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.labels = ["httpool", "httpool@old"]
        self.log = log
        self.seeds: list[int] = []
        self.started = self.stopped = 0

    def start(self, seed: int) -> dict[str, Child]:
        self.seeds.append(seed)
        self.started += 1
        return {label: cast(Child, _Worker(f"{label}#{self.started}", self.log))
                for label in self.labels}  # fmt: skip

    def stop(self, children: dict[str, Child]) -> None:
        assert set(children) == set(self.labels)
        self.stopped += 1


def test_each_round_runs_the_trees_in_processes_of_its_own() -> None:
    log: list[tuple[str, str]] = []
    trees = _Trees(log)
    shared = cast(Child, _Worker("shared", log))
    upstream = Upstream("h1", "http://127.0.0.1:9/", None, http2=False)
    settings = QUICK.replace(
        rounds=3, client_upstreams=("h1",), client_concurrency=(1, 10), same_server_upstreams=()
    )
    rows = client_level.run(shared, {"h1": upstream}, settings, trees)
    assert trees.started == trees.stopped == 2 * 3  # a start and a stop per cell and round
    assert trees.seeds == [round_seed(cell, r) for cell in range(2) for r in range(3)]
    # round 2 of the first cell: its own pair of processes, both running variant httpool
    assert ("httpool@old#2", "httpool") in log
    assert ("httpool#2", "httpool") in log
    assert ("shared", "httpool") not in log  # the shared worker never runs a tree
    first = {row["variant"]: row for row in rows if row["concurrency"] == 1}
    assert first["httpool"]["hash_seeds"] == trees.seeds[:3]
    assert "hash_seeds" not in first["aiohttp"]
    assert first["httpool"]["over_baseline_rounds"] == [1.0, 1.0, 1.0]
