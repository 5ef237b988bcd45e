"""Section 2: end to end, a FastAPI route that calls the upstream, loaded by wrk.

Each variant of `bench.e2e_app` runs in its own uvicorn process (one worker, uvloop,
httptools, no access log) against the plain HTTP/1.1 upstream. wrk (or `bench.pyload`)
loads ``GET /proxy`` from a third process. The rounds interleave the variants, and a
control app that answers without calling the upstream; the upstream's counters give
the upstream connections each run opened.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from typing import Any

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


def _start_apps(sup: Supervisor, upstream: Upstream) -> dict[str, tuple[Child, str]]:
    apps: dict[str, tuple[Child, str]] = {}
    for variant in (*E2E_VARIANTS, CONTROL):
        port = free_port()
        argv = python(
            "-m", "uvicorn", "bench.e2e_app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
            "--no-access-log", "--log-level", "warning",
        )  # fmt: skip
        env = {"BENCH_VARIANT": variant, "BENCH_UPSTREAM": upstream.base_url}
        child = sup.start(f"e2e-{variant}", argv, port=port, env=env)
        url = f"http://127.0.0.1:{port}/proxy"
        with urllib.request.urlopen(url, timeout=10) as response:  # the route works
            json.loads(response.read())
        apps[variant] = (child, url)
    return apps


def run(sup: Supervisor, upstream: Upstream, settings: Settings) -> list[dict[str, Any]]:
    """One row per (concurrency, variant) with the rounds' median req/s and latency."""
    apps = _start_apps(sup, upstream)
    try:
        for variant, (_, url) in apps.items():  # connections opened, code paths warm
            load(url, max(settings.e2e_concurrency), settings.e2e_warmup_seconds)
            print(f"  e2e warm-up {variant}", file=sys.stderr)
        rows: list[dict[str, Any]] = []
        for concurrency in settings.e2e_concurrency:
            rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in apps}
            for r in range(settings.rounds):
                for variant, (_, url) in apps.items():
                    before = _upstream_stats(upstream)
                    result = load(url, concurrency, settings.e2e_seconds)
                    after = _upstream_stats(upstream)
                    opened = after["connections"] - before["connections"]
                    served = after["requests"] - before["requests"]
                    result["upstream_connections"] = opened
                    result["upstream_requests"] = served
                    rounds[variant].append(result)
                    print(
                        f"  e2e c={concurrency:<3} round {r + 1} {variant:14} "
                        f"{result['rps']:8.0f} req/s  errors {result['errors']}  "
                        f"upstream connections opened {opened}",
                        file=sys.stderr,
                    )
            rows.extend(_rows(concurrency, rounds))
        return rows
    finally:
        for child, _ in apps.values():
            sup.stop(child)


def _rows(concurrency: int, rounds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    medians = {v: median([r["rps"] for r in rs]) for v, rs in rounds.items()}
    return [
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
        }
        for variant, results in rounds.items()
    ]
