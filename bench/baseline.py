"""A second httpool for side-by-side runs: ``src/httpool`` as it is on another git revision.

``python -m bench --baseline REV`` exports that revision's ``src/httpool`` with ``git
archive`` into the run's temporary directory (outside the repository, removed with it)
and adds a variant ``httpool@REV`` beside ``httpool`` in the client-level and end-to-end
sections. Both trees are the package ``httpool``, so each runs in processes of its own:
the baseline's load generator and its e2e app get the exported tree first on
``PYTHONPATH``, the current ones this checkout's ``src``. Every such process reports
``httpool.__file__`` and the driver refuses to go on unless it is inside the tree that
process should import (`check_import`).

Those processes are started afresh for every round, and in one round the trees' processes
get the same ``PYTHONHASHSEED`` (`round_seed`), another in each round. A process keeps
for its whole life what its start drew at random: the hash seed (how its dicts and sets
lay out) and where its memory lies. With one process per tree for the whole run, that
draw is a bias no number of rounds averages out: a run with the same tree on both
sides gave 1.06, outside its own ±2 standard errors. Fresh processes make it part of
each round's noise, which the interval then covers.
"""

from __future__ import annotations

import io
import math
import random
import statistics
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .procs import ROOT, Child
from .stats import median, ratio

__all__ = [
    "FreshProcesses",
    "Tree",
    "check_import",
    "comparison",
    "current_tree",
    "export",
    "pooled",
    "round_order",
    "round_seed",
]

PACKAGE = "src/httpool"


@dataclass(frozen=True, slots=True)
class Tree:
    """One httpool source tree under test: its variant label and what it was made from."""

    label: str
    rev: str
    commit: str
    src: Path
    dirty: bool = False

    @property
    def env(self) -> dict[str, str]:
        """Environment for a process that must import this tree (the bench adds its root)."""
        return {"PYTHONPATH": str(self.src)}

    def meta(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "rev": self.rev,
            "commit": self.commit,
            "src": str(self.src),
            "uncommitted_changes": self.dirty,
        }


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, timeout=60, check=False
    )


def _commit(rev: str) -> str:
    done = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if done.returncode != 0:
        raise SystemExit(
            f"--baseline {rev}: not a commit, branch or tag of {ROOT}; "
            "give one that `git rev-parse` knows (e.g. main or a short hash)"
        )
    return done.stdout.decode().strip()


def current_tree() -> Tree:
    """This checkout's ``src/httpool``, labelled ``httpool``, with its HEAD and dirtiness."""
    commit = _git("rev-parse", "HEAD").stdout.decode().strip()
    status = _git("status", "--porcelain", "--", PACKAGE).stdout.decode().strip()
    return Tree("httpool", "HEAD", commit, ROOT / "src", dirty=bool(status))


def export(rev: str, dest: Path) -> Tree:
    """Write revision `rev`'s ``src/httpool`` under `dest` and describe it as a `Tree`.

    `dest` must lie outside the repository; the caller removes it.
    """
    commit = _commit(rev)
    done = _git("archive", "--format=tar", commit, PACKAGE)
    if done.returncode != 0:
        raise SystemExit(
            f"--baseline {rev}: commit {commit[:12]} has no {PACKAGE} to export "
            f"({done.stderr.decode().strip()}); pick a revision that has the package"
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(dest, filter="data")
    src = dest / "src"
    if not (src / "httpool" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {rev}: {PACKAGE}/__init__.py missing at {commit[:12]}")
    return Tree(f"httpool@{rev}", rev, commit, src)


def check_import(tree: Tree, process: str, httpool_file: str) -> None:
    """Fail unless `process` imported httpool from `tree` (its ``httpool.__file__``)."""
    found = Path(httpool_file).resolve()
    if not found.is_relative_to(tree.src.resolve()):
        raise RuntimeError(
            f"{process} should import httpool from {tree.src} ({tree.label}) but imported "
            f"{found}; check PYTHONPATH and how httpool is installed in this interpreter"
        )


def round_seed(cell: int, round_index: int) -> int:
    """The ``PYTHONHASHSEED`` of every tree's process in round `round_index` of cell
    `cell`: the same for the trees, drawn anew for each round (and the same in every run).
    """
    return random.Random(cell * 1_000 + round_index).randrange(1, 2**32 - 1)


class FreshProcesses(Protocol):
    """Starts each tree's process for one round (and stops them after it)."""

    @property
    def labels(self) -> list[str]:
        """The trees' labels: ``httpool``, then the baseline's."""
        ...

    def start(self, seed: int) -> dict[str, Child]:
        """Label -> a new process importing that tree, all with hash seed `seed`."""
        ...

    def stop(self, children: dict[str, Child]) -> None:
        """Stop the processes `start` gave."""
        ...


def round_order(labels: list[str], round_index: int, baseline: str | None) -> list[str]:
    """`labels` in the order of one round: ``httpool`` and the baseline swap every other
    round, so neither always runs right after the other (the rest keep their places)."""
    if baseline is None or round_index % 2 == 0:
        return labels
    swap = {"httpool": baseline, baseline: "httpool"}
    return [swap.get(label, label) for label in labels]


def comparison(
    label: str, rounds: dict[str, list[dict[str, Any]]], baseline: str
) -> dict[str, Any]:
    """Ratios of variant `label` against raw aiohttp and against the baseline.

    ``over_aiohttp`` and ``over_baseline`` divide the medians over the rounds;
    ``over_baseline_rounds`` divides round by round (the two ran one after the other,
    so it shows how much the ratio moves from round to round).
    """
    mine = [r["rps"] for r in rounds.get(label, [])]
    old = [r["rps"] for r in rounds.get(baseline, [])]
    aiohttp = [r["rps"] for r in rounds.get("aiohttp", [])]
    return {
        "over_aiohttp": ratio(median(mine), median(aiohttp)),
        "over_baseline": ratio(median(mine), median(old)),
        "over_baseline_rounds": [ratio(a, b) for a, b in zip(mine, old, strict=False)],
    }


def pooled(ratios: list[float]) -> tuple[float, float, float]:
    """Geometric mean of per-round ratios, and mean ± 2 standard errors on the log scale.

    Pooling the rounds of several cells (all concurrencies of an upstream) gives a figure
    far steadier than any one cell's; the interval (NaN below two ratios) says how far
    the noise of this run alone could move it.
    """
    logs = [math.log(r) for r in ratios if r > 0 and math.isfinite(r)]
    if not logs:
        return math.nan, math.nan, math.nan
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), math.nan, math.nan
    half = 2 * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)
