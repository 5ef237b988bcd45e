"""Section 3: upstream connections opened per 1,000 requests, counted at the server.

Each variant warms up (two calls from each of `concurrency` tasks, which opens all the
connections it wants), then sends `count_requests` more, or as many as it can in
`count_seconds`; the upstream's own counter, read before and after, gives the
connections opened for them, scaled to 1,000 requests. A pool that keeps its
connections opens none.
"""

from __future__ import annotations

import sys
from typing import Any

from .procs import Child
from .servers import Upstream
from .settings import Settings
from .stats import median
from .variants import HTTP2_CAPABLE, VARIANTS

__all__ = ["run"]


def run(worker: Child, upstreams: dict[str, Upstream], settings: Settings) -> list[dict[str, Any]]:
    """One row per (upstream, concurrency, variant): the median over the rounds."""
    rows: list[dict[str, Any]] = []
    for kind in settings.count_upstreams:
        upstream = upstreams[kind]
        for concurrency in settings.count_concurrency:
            rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
            for _ in range(settings.count_rounds):
                for variant in VARIANTS:
                    if upstream.http2 and variant not in HTTP2_CAPABLE:
                        continue
                    result = worker.call(
                        upstream.command(
                            "count",
                            variant,
                            concurrency,
                            stats_url=upstream.stats_url,
                            requests=settings.count_requests,
                            max_seconds=settings.count_seconds,
                        )
                    )
                    rounds[variant].append(result)
                    print(
                        f"  connections {kind:7} c={concurrency:<3} {variant:14} "
                        f"opened {result['opened']} for {result['served']} requests "
                        f"(warm-up opened {result['warmup_connections']})",
                        file=sys.stderr,
                    )
            for variant, results in rounds.items():
                if not results:
                    continue
                rows.append(
                    {
                        "upstream": kind,
                        "concurrency": concurrency,
                        "variant": variant,
                        "per_1000": median([r["per_1000"] for r in results]),
                        "per_1000_rounds": [r["per_1000"] for r in results],
                        "errors": sum(r["errors"] for r in results),
                    }
                )
    return rows
