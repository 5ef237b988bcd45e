"""httpx's own test suite run twice, on httpx's stock transport and on httpool's, and compared.

`python -m tests.conformance` (or `make conformance`):

1. downloads the sdist of the installed httpx version with pip into `.cache/conformance/`
   (git-ignored; the files are never copied into the repository nor edited) and
   unpacks it there, once;
2. runs its tests in that folder, in a subprocess, once with httpx's stock
   `AsyncHTTPTransport` and once with `httpool.PoolTransport` built by every
   `httpx.AsyncClient()` (the swap is `pool_transport_plugin.py`), with tests marked
   `network` deselected (they leave loopback) and trio variants deselected (httpool
   runs on asyncio);
3. compares the outcomes against `expected_failures.txt` and fails when a test passes
   on the stock transport and fails on PoolTransport without being listed, or when a
   listed test passes on PoolTransport, fails on the stock transport too, or is not run.

Tests that fail on both transports (the environment: newer uvicorn, click, ...) are
counted and named, not judged: they say nothing about the transport. httpx's test
server listens on 127.0.0.1:8000, which must be free.

Extra arguments after `--` go to both pytest runs (for example `-- -k redirects`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXPECTED_FILE = HERE / "expected_failures.txt"
DEFAULT_CACHE = ROOT / ".cache" / "conformance"
RUN_TIMEOUT = 600  # seconds for one whole pytest run; a run takes about 20 s


@dataclass
class Run:
    """The outcome of one pytest run: each test's outcome, what was deselected, the exit code."""

    outcomes: dict[str, str]
    deselected: list[str]
    exit_code: int
    built: int = 0
    log: Path | None = None

    def count(self, outcome: str) -> int:
        """How many tests ended with `outcome` (`passed`, `failed` or `skipped`)."""
        return sum(1 for value in self.outcomes.values() if value == outcome)

    def figures(self) -> str:
        """`N passed, N failed, N skipped, N deselected`."""
        return (
            f"{self.count('passed')} passed, {self.count('failed')} failed, "
            f"{self.count('skipped')} skipped, {len(self.deselected)} deselected"
        )


@dataclass
class Verdict:
    """What the comparison found: problems fail the run; notes are only reported."""

    problems: list[str] = field(default_factory=list)
    both_failed: list[str] = field(default_factory=list)
    only_pool_passes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def load_expected(path: Path = EXPECTED_FILE) -> dict[str, str]:
    """The expected failures: `node id # reason` per line; `#` lines and blank lines skipped."""
    expected: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        nodeid, _, reason = line.partition(" # ")
        nodeid, reason = nodeid.strip(), reason.strip()
        if not reason:
            msg = f"{path.name}:{number}: give a reason after ' # ' for {nodeid}"
            raise ValueError(msg)
        if nodeid in expected:
            msg = f"{path.name}:{number}: {nodeid} is listed twice"
            raise ValueError(msg)
        expected[nodeid] = reason
    return expected


def compare(stock: Run, pool: Run, expected: dict[str, str]) -> Verdict:
    """Judge the PoolTransport run against the stock run and the list of expected failures."""
    verdict = Verdict()
    for run, name in ((stock, "stock"), (pool, "PoolTransport")):
        if run.exit_code not in (0, 1):
            verdict.problems.append(f"the {name} run ended with pytest exit code {run.exit_code}")
    if pool.built == 0:
        verdict.problems.append("no httpx.AsyncClient was built on PoolTransport: the swap failed")
    for nodeid, outcome in sorted(pool.outcomes.items()):
        before = stock.outcomes.get(nodeid)
        if outcome == "failed" and nodeid not in expected:
            if before == "failed":
                verdict.both_failed.append(nodeid)
            else:
                was = "passes" if before == "passed" else before or "is not run"
                verdict.problems.append(
                    f"{nodeid} fails on PoolTransport and {was} on the stock transport"
                )
        elif outcome == "passed" and before == "failed":
            verdict.only_pool_passes.append(nodeid)
    for nodeid, outcome in sorted(stock.outcomes.items()):
        if outcome == "passed" and nodeid not in pool.outcomes:
            verdict.problems.append(
                f"{nodeid} passes on the stock transport, not run on PoolTransport"
            )
    for nodeid, reason in expected.items():
        listed, before = pool.outcomes.get(nodeid), stock.outcomes.get(nodeid)
        if listed is None:
            verdict.problems.append(f"listed, not run on PoolTransport: {nodeid} ({reason})")
        elif listed != "failed":
            verdict.problems.append(
                f"listed, {listed} on PoolTransport: remove it from the list: {nodeid}"
            )
        elif before != "passed":
            verdict.problems.append(
                f"listed, {before or 'not run'} on the stock transport too, so not a "
                f"PoolTransport failure: {nodeid}"
            )
    return verdict


def fetch_suite(version: str, cache: Path) -> Path:
    """The unpacked sdist of httpx `version` in `cache`, downloaded with pip if needed."""
    suite = cache / f"httpx-{version}"
    if (suite / "tests" / "conftest.py").is_file():
        return suite
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"httpx-{version}.tar.gz"
    if not sdist.is_file():
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--no-binary", ":all:", f"httpx=={version}", "--dest", str(cache)),
            ],
            check=True,
            timeout=RUN_TIMEOUT,
        )
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        with tarfile.open(sdist) as archive:
            archive.extractall(scratch, filter="data")
        Path(scratch, f"httpx-{version}").rename(suite)
    return suite


def run_suite(suite: Path, transport: str, cache: Path, extra: list[str]) -> Run:
    """Run the suite in a subprocess with `transport` (`stock` or `pool`); return its outcomes."""
    report = cache / f"{transport}.json"
    log = cache / f"{transport}.log"
    report.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["HTTPOOL_CONFORMANCE_TRANSPORT"] = transport
    env["HTTPOOL_CONFORMANCE_REPORT"] = str(report)
    command = [sys.executable, "-m", "pytest", "-p", "pool_transport_plugin"]
    command += ["-p", "no:httpool", "-p", "no:cacheprovider", "-m", "not network"]
    command += [
        "-q",
        "-rfE",
        "--tb=short",
        "--timeout=60",
        f"--basetemp={cache / ('tmp-' + transport)}",
    ]
    with log.open("w") as out:
        done = subprocess.run(
            command + extra,
            cwd=suite,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    if not report.is_file():
        return Run(outcomes={}, deselected=[], exit_code=done.returncode or 3, log=log)
    data = json.loads(report.read_text())
    return Run(data["outcomes"], data["deselected"], done.returncode, data["built"], log)


def main(argv: list[str] | None = None) -> int:
    """Run both passes, print the figures and the verdict; 0 when PoolTransport conforms."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="download and work folder"
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    version = importlib.metadata.version("httpx")
    expected = load_expected()
    suite = fetch_suite(version, args.cache)
    print(f"httpx {version} test suite from {suite}")
    runs = {}
    for transport in ("stock", "pool"):
        runs[transport] = run_suite(suite, transport, args.cache, args.pytest_args)
        print(f"  {transport:>5}: {runs[transport].figures()}  (log: {runs[transport].log})")
    print(f"  httpx.AsyncClient instances built on PoolTransport: {runs['pool'].built}")
    verdict = compare(runs["stock"], runs["pool"], expected)
    listed = sum(1 for nodeid in expected if runs["pool"].outcomes.get(nodeid) == "failed")
    print(f"  expected failures on PoolTransport (listed): {listed} of {len(expected)}")
    if verdict.both_failed:
        print(f"  failing on both transports (environment, not judged): {len(verdict.both_failed)}")
        for nodeid in verdict.both_failed:
            print(f"    {nodeid}")
    for nodeid in verdict.only_pool_passes:
        print(f"  passes on PoolTransport only: {nodeid}")
    if verdict.ok:
        print(
            "conformance: OK, PoolTransport passes every test the stock transport passes, apart from the listed ones"
        )
        return 0
    print(f"conformance: FAILED ({len(verdict.problems)} problems); see {runs['pool'].log}")
    for problem in verdict.problems:
        print(f"  {problem}")
    return 1
