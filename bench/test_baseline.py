"""Checks of ``--baseline``: the export, the import check, the round order and the ratios.

Not in the project's test paths (the bench is not part of the package); run them with
``.venv/bin/pytest bench/test_baseline.py``.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.baseline import check_import, comparison, current_tree, export, pooled, round_order
from bench.procs import ROOT


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
