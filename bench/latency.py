"""Sections 4 and 5: latency of pooled versus per-request clients over a slow TLS link.

`bench.latency_proxy` sits in front of the HTTP/1.1-over-TLS upstream and adds
`latency_delay_ms` each way (so one round trip costs twice that, and a new connection
pays one round trip for TCP and one for the TLS 1.3 handshake before its request). The
upstream answers after `server_ms` (0: the network alone; 150: a short embeddings call).

Section 4 sends calls one after another: through one pooled client (its connection open
before timing starts), or through a new `httpx.AsyncClient` per call, with httpx's
transport or httpool's. Section 5 times a fresh client's first call against the same
client's second call (its connection already open).
"""

from __future__ import annotations

import sys
from typing import Any, Final

from .procs import Child, Supervisor, free_port, python
from .servers import Upstream
from .settings import Settings
from .stats import median, percentile

__all__ = ["MODES", "run"]

#: (label, transport, mode) in the order they run in each round.
MODES: Final = (
    ("httpool pooled", "httpool", "pooled"),
    ("httpx pooled", "httpx", "pooled"),
    ("httpx new client per call", "httpx", "per-request"),
    ("httpool new client per call", "httpool", "per-request"),
)
#: (label, worker op, variant) of section 5.
FIRST_VARIANTS: Final = (
    ("httpool", "first", "httpool"),
    ("httpx", "first", "httpx"),
    ("httpool Provider(warmup=1)", "first-pool", "httpool"),
)


def _start_proxy(sup: Supervisor, upstream: Upstream, delay_ms: float) -> tuple[Child, str]:
    port = free_port()
    target = upstream.base_url.removeprefix("https://").rstrip("/")
    argv = python(
        "-m", "bench.latency_proxy", "--port", str(port),
        "--target", target, "--delay-ms", str(delay_ms),
    )  # fmt: skip
    child = sup.start("latency-proxy", argv, port=port)
    return child, f"https://127.0.0.1:{port}/"


def run(sup: Supervisor, worker: Child, upstream: Upstream, settings: Settings) -> dict[str, Any]:
    """``{"calls": [...], "first_request": [...], "delay_ms": ...}``."""
    proxy, base_url = _start_proxy(sup, upstream, settings.latency_delay_ms)
    try:
        calls = [
            row
            for server_ms in settings.latency_server_ms
            for row in _calls(worker, base_url, upstream.ca, server_ms, settings)
        ]
        first = _first(worker, base_url, upstream.ca, max(settings.latency_server_ms), settings)
    finally:
        sup.stop(proxy)
    return {"delay_ms": settings.latency_delay_ms, "calls": calls, "first_request": first}


def _calls(
    worker: Child, base_url: str, ca: str | None, server_ms: int, settings: Settings
) -> list[dict[str, Any]]:
    samples: dict[str, list[float]] = {label: [] for label, _, _ in MODES}
    for r in range(settings.rounds):
        for label, transport, mode in MODES:
            answer = worker.call(
                {
                    "op": "latency",
                    "variant": transport,
                    "mode": mode,
                    "base_url": base_url,
                    "ca": ca,
                    "http2": False,
                    "path": f"/embed?ms={server_ms}",
                    "requests": settings.latency_requests,
                }
            )
            samples[label].extend(answer["samples_ms"])
            print(
                f"  latency server {server_ms:>3} ms round {r + 1} {label:28} "
                f"p50 {percentile(answer['samples_ms'], 50):6.1f} ms",
                file=sys.stderr,
            )
    per_call_p50 = percentile(samples["httpx new client per call"], 50)
    rows = []
    for label, transport, mode in MODES:
        p50 = percentile(samples[label], 50)
        rows.append(
            {
                "server_ms": server_ms,
                "label": label,
                "transport": transport,
                "mode": mode,
                "n": len(samples[label]),
                "p50_ms": p50,
                "p99_ms": percentile(samples[label], 99),
                "saved_vs_per_call_pct": (1 - p50 / per_call_p50) * 100,
                "saved_vs_per_call_ms": per_call_p50 - p50,
            }
        )
    return rows


def _first(
    worker: Child, base_url: str, ca: str | None, server_ms: int, settings: Settings
) -> list[dict[str, Any]]:
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in FIRST_VARIANTS}
    unavailable: dict[str, str] = {}
    for _ in range(settings.first_rounds):
        for label, op, variant in FIRST_VARIANTS:
            if label in unavailable:
                continue
            command: dict[str, Any] = {"op": op, "variant": variant, "base_url": base_url}
            command |= {"ca": ca, "http2": False, "path": f"/embed?ms={server_ms}"}
            try:
                results[label].append(worker.call(command))
            except RuntimeError as exc:  # e.g. an httpool without Provider(warmup=...)
                unavailable[label] = str(exc)
                print(f"  first request {label}: unavailable: {exc}", file=sys.stderr)
    rows = []
    for label, op, _ in FIRST_VARIANTS:
        rs = results[label]
        cold = median([r["cold_ms"] for r in rs])
        warm = median([r["warm_ms"] for r in rs])
        rows.append(
            {
                "label": label,
                "kind": "pool warm-up" if op == "first-pool" else "client",
                "server_ms": server_ms,
                "n": len(rs),
                "cold_ms": cold,
                "warm_ms": warm,
                "saved_ms": cold - warm,
                "note": unavailable.get(label, ""),
            }
        )
        print(
            f"  first request {label:28} first {cold:6.1f} ms  second {warm:6.1f} ms",
            file=sys.stderr,
        )
    return rows
