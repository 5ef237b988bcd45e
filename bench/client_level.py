"""Section 1: client-level throughput, each variant against each upstream, interleaved.

For every upstream and concurrency, the rounds run the variants in turn (A B C D, A B C D,
...), each round in the load-generator process with a fresh client: a short warm-up, then
`client_seconds` of requests. The figure of a cell is the median over its rounds.

With a baseline (``--baseline REV``), ``httpool`` and ``httpool@REV`` each run in a
load-generator process of their own (each importing its tree; the other variants share a
third), started afresh for every round with one hash seed for both (`bench.baseline`),
one right after the other in every round (they swap places every other round), and each
row also gets its ratios against raw aiohttp and against the baseline.
"""

from __future__ import annotations

import sys
from typing import Any

from .baseline import FreshProcesses, comparison, round_order, round_seed
from .procs import Child
from .servers import Upstream
from .settings import Settings
from .stats import median, ratio
from .variants import HTTP2_CAPABLE, VARIANTS

__all__ = ["run"]


def _supported(variant: str, upstream: Upstream) -> bool:
    # granian --http 2 speaks only HTTP/2; the aiohttp variants speak only HTTP/1.1
    return not upstream.http2 or variant in HTTP2_CAPABLE


def run(
    worker: Child,
    upstreams: dict[str, Upstream],
    settings: Settings,
    trees: FreshProcesses | None = None,
) -> list[dict[str, Any]]:
    """One row per (upstream, concurrency, variant), with the rounds and their median.

    With `trees` (``--baseline``), each httpool tree runs in a load generator of its own,
    started afresh for every round (`bench.baseline`), in place of the ``httpool``
    variant of `worker`, which runs every other variant.
    """
    labels = list(VARIANTS)
    if trees is not None:
        labels = [*trees.labels, *(v for v in VARIANTS if v != "httpool")]
    baseline = trees.labels[-1] if trees is not None and len(trees.labels) > 1 else None
    rows: list[dict[str, Any]] = []
    plan = [(kind, c) for kind in settings.client_upstreams for c in settings.client_concurrency]
    plan += [
        (kind, c)
        for kind in settings.same_server_upstreams
        if kind in upstreams  # nginx may not be installed
        for c in settings.same_server_concurrency
    ]
    for cell, (kind, concurrency) in enumerate(plan):
        upstream = upstreams[kind]
        rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
        seeds: list[int] = []
        for r in range(settings.rounds):
            own: dict[str, Child] = {}
            if trees is not None:
                seeds.append(round_seed(cell, r))
                own = trees.start(seeds[-1])
            try:
                for label in round_order(labels, r, baseline):
                    child, variant = (own[label], "httpool") if label in own else (worker, label)
                    if not _supported(variant, upstream):
                        continue
                    result = child.call(
                        upstream.command(
                            "rps",
                            variant,
                            concurrency,
                            duration=settings.client_seconds,
                            warmup=settings.client_warmup_seconds,
                            max_warmup=settings.client_max_warmup_seconds,
                            max_requests=200_000,
                        )
                    )
                    rounds[label].append(result)
                    print(
                        f"  client {kind:7} c={concurrency:<3} round {r + 1} {label:14} "
                        f"{result['rps']:8.0f} req/s  errors {result['errors']}",
                        file=sys.stderr,
                    )
            finally:
                if trees is not None:
                    trees.stop(own)
        rows.extend(_rows(kind, concurrency, rounds, baseline, seeds))
    return rows


def _rows(
    kind: str,
    concurrency: int,
    rounds: dict[str, list[dict[str, Any]]],
    baseline: str | None,
    seeds: list[int],
) -> list[dict[str, Any]]:
    medians = {v: median([r["rps"] for r in rs]) for v, rs in rounds.items()}
    out = []
    for variant, results in rounds.items():
        out.append(
            {
                "upstream": kind,
                "concurrency": concurrency,
                "variant": variant,
                "supported": bool(results),
                "rps": medians[variant],
                "rps_rounds": [r["rps"] for r in results],
                "warmup_s": median([r["warmup_s"] for r in results]),
                "p50_ms": median([r["p50_ms"] for r in results]),
                "p99_ms": median([r["p99_ms"] for r in results]),
                "errors": sum(r["errors"] for r in results),
                "error_kinds": sorted({k for r in results for k in r["error_kinds"]}),
                "httpool_over_variant": ratio(medians["httpool"], medians[variant]),
            }
        )
        if baseline is not None:
            out[-1].update(comparison(variant, rounds, baseline))
            if variant in ("httpool", baseline):  # fresh processes every round
                out[-1]["hash_seeds"] = seeds
    return out
