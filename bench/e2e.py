"""Section 2: end to end, a FastAPI route that calls the upstream, loaded by wrk.

Each variant of `bench.e2e_app` runs in its own uvicorn process (one worker, uvloop,
httptools, no access log) against the plain HTTP/1.1 upstream. wrk (or `bench.pyload`)
loads ``GET /proxy`` from a third process. The rounds interleave the variants, and a
control app that answers without calling the upstream; the upstream's counters give
the upstream connections each run opened.

With a baseline (``--baseline REV``) the httpool app runs twice, once per source tree
(``httpool`` and ``httpool@REV``), each uvicorn process with its tree first on
``PYTHONPATH``; every round starts both afresh (one hash seed for both, `bench.baseline`),
warms them up, and loads them one after the other.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Sequence
from typing import Any

from .baseline import Tree, check_import, comparison, round_order, round_seed
from .e2e_app import CONTROL, E2E_VARIANTS
from .procs import Child, Supervisor, free_port, python
from .servers import Upstream
from .settings import Settings
from .stats import median, ratio
from .wrk import load

__all__ = ["run"]


def _upstream_stats(upstream: Upstream) -> dict[str, int]:
    with urllib.request.urlopen(upstream.stats_url, timeout=5) as response:
        data: dict[str, int] = json.loads(response.read())
        return data


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _start_app(
    sup: Supervisor,
    upstream: Upstream,
    label: str,
    variant: str,
    tree: Tree | None,
    imported: dict[str, dict[str, str]],
    seed: int | None = None,
) -> tuple[Child, str]:
    """One app under uvicorn: its process and the URL to load; a `tree`'s app is checked
    to import that tree; with `seed`, its ``PYTHONHASHSEED``."""
    port = free_port()
    argv = python(
        "-m", "uvicorn", "bench.e2e_app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
        "--no-access-log", "--log-level", "warning",
    )  # fmt: skip
    env = {"BENCH_VARIANT": variant, "BENCH_UPSTREAM": upstream.base_url}
    if tree is not None:
        env |= tree.env
    if seed is not None:
        env["PYTHONHASHSEED"] = str(seed)
    child = sup.start(f"e2e-{label}", argv, port=port, env=env)
    base = f"http://127.0.0.1:{port}"
    _get_json(base + "/proxy")  # the route works
    if tree is not None:
        found = _get_json(base + "/__whoami")["httpool_file"]
        check_import(tree, f"the e2e app {label}", found)
        imported.setdefault(tree.label, {})[f"e2e-{label}"] = found
    return child, base + "/proxy"


def _warm(label: str, url: str, settings: Settings) -> None:
    """Connections opened, code paths warm."""
    load(url, max(settings.e2e_concurrency), settings.e2e_warmup_seconds)
    print(f"  e2e warm-up {label}", file=sys.stderr)


def run(
    sup: Supervisor,
    upstream: Upstream,
    settings: Settings,
    trees: Sequence[Tree] = (),
    imported: dict[str, dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """One row per (concurrency, variant) with the rounds' median req/s and latency.

    `trees` (the current tree, then the baseline) runs one httpool app per tree, started
    afresh for every round with one hash seed for both (`bench.baseline`); the file each
    app imported httpool from goes into `imported` (tree label -> process -> file).
    """
    imported = {} if imported is None else imported
    variants = [v for v in (*E2E_VARIANTS, CONTROL) if not (trees and v == "httpool")]
    apps: dict[str, tuple[Child, str]] = {}
    labels = [*(t.label for t in trees), *variants]
    baseline = trees[-1].label if len(trees) > 1 else None
    try:
        for variant in variants:  # one process each for the whole run
            apps[variant] = _start_app(sup, upstream, variant, variant, None, imported)
            _warm(variant, apps[variant][1], settings)
        rows: list[dict[str, Any]] = []
        for cell, concurrency in enumerate(settings.e2e_concurrency):
            rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
            seeds: list[int] = []
            for r in range(settings.rounds):
                own: dict[str, tuple[Child, str]] = {}
                if trees:
                    seeds.append(round_seed(cell, r))
                    own = _tree_apps(sup, upstream, trees, imported, seeds[-1], settings)
                try:
                    for label in round_order(labels, r, baseline):
                        url = (own.get(label) or apps[label])[1]
                        where = f"c={concurrency:<3} round {r + 1} {label:14}"
                        rounds[label].append(_measure(upstream, url, concurrency, settings, where))
                finally:
                    for child, _ in own.values():
                        sup.stop(child)
            rows.extend(_rows(concurrency, rounds, baseline, seeds))
        return rows
    finally:
        for child, _ in apps.values():
            sup.stop(child)


def _tree_apps(
    sup: Supervisor,
    upstream: Upstream,
    trees: Sequence[Tree],
    imported: dict[str, dict[str, str]],
    seed: int,
    settings: Settings,
) -> dict[str, tuple[Child, str]]:
    """Each tree's httpool app, started afresh with hash seed `seed` and warmed up."""
    apps = {}
    for tree in trees:
        apps[tree.label] = _start_app(sup, upstream, tree.label, "httpool", tree, imported, seed)
        _warm(tree.label, apps[tree.label][1], settings)
    return apps


def _measure(
    upstream: Upstream, url: str, concurrency: int, settings: Settings, where: str
) -> dict[str, Any]:
    """One wrk run, with the upstream connections it made the app open (logged as `where`)."""
    before = _upstream_stats(upstream)
    result = load(url, concurrency, settings.e2e_seconds)
    after = _upstream_stats(upstream)
    result["upstream_connections"] = opened = after["connections"] - before["connections"]
    result["upstream_requests"] = after["requests"] - before["requests"]
    print(
        f"  e2e {where} {result['rps']:8.0f} req/s  errors {result['errors']}  "
        f"upstream connections opened {opened}",
        file=sys.stderr,
    )
    return result


def _rows(
    concurrency: int,
    rounds: dict[str, list[dict[str, Any]]],
    baseline: str | None,
    seeds: list[int],
) -> list[dict[str, Any]]:
    medians = {v: median([r["rps"] for r in rs]) for v, rs in rounds.items()}
    rows = [
        {
            "concurrency": concurrency,
            "variant": variant,
            "rps": medians[variant],
            "rps_rounds": [r["rps"] for r in results],
            "p50_ms": median([r["p50_ms"] for r in results]),
            "p99_ms": median([r["p99_ms"] for r in results]),
            "errors": sum(r["errors"] for r in results),
            "timeouts": sum(r["timeouts"] for r in results),
            "upstream_connections_rounds": [r["upstream_connections"] for r in results],
            "upstream_connections_per_1000": median(
                [
                    r["upstream_connections"] * 1000 / r["upstream_requests"]
                    for r in results
                    if r["upstream_requests"] and variant != CONTROL
                ]
            ),
            "httpool_over_variant": ratio(medians["httpool"], medians[variant]),
            "tool": results[0]["tool"] if results else "",
            **(comparison(variant, rounds, baseline) if baseline else {}),
        }
        for variant, results in rounds.items()
    ]
    for row in rows:
        if baseline is not None and row["variant"] in ("httpool", baseline):
            row["hash_seeds"] = seeds  # fresh processes every round
    return rows
