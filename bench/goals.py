"""The issue's goals, checked against one run's results."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .servers import SAME_SERVER
from .stats import ratio

__all__ = ["evaluate"]

LATENCY_CLAIM_PCT = 15.0  # the low end of the "15-30 % faster calls" claim
H2_CONCURRENCY = 50  # HTTP/2 over TLS >= 0.8x HTTP/1.1 over TLS at this concurrency


def _goal(name: str, measured: float, target: float, unit: str, detail: str) -> dict[str, Any]:
    """A ``measured >= target`` goal; ``margin`` is how far above (or below) it is."""
    if math.isnan(measured):
        status, margin = "n/a", ""
    else:
        status = "PASS" if measured >= target else "FAIL"
        margin = f"{measured - target:+.2f}{unit}" if unit else f"{measured / target - 1:+.0%}"
    return {
        "goal": name,
        "target": f">= {target:g}{unit or 'x'}",
        "measured": "n/a" if math.isnan(measured) else f"{measured:.2f}{unit or 'x'}",
        "status": status,
        "margin": margin,
        "detail": detail,
    }


def _find(rows: Iterable[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _rps(rows: list[dict[str, Any]], variant: str, c: int) -> float:
    row = _find(rows, variant=variant, concurrency=c)
    return row["rps"] if row else math.nan


def _spread(rows: list[dict[str, Any]], variant: str, c: int) -> str:
    row = _find(rows, variant=variant, concurrency=c)
    if not row or len(row["rps_rounds"]) < 2:
        return ""
    return f"{min(row['rps_rounds']):.0f}-{max(row['rps_rounds']):.0f}"


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per goal: goal, target, measured, status (PASS/FAIL/n/a), margin, detail."""
    goals: list[dict[str, Any]] = []
    e2e = results.get("e2e") or []
    for c in sorted({r["concurrency"] for r in e2e}):
        for other, target in (("naive", 3.0), ("httpx-aiohttp", 1.0), ("aiohttp", 0.6)):
            a, b = _rps(e2e, "httpool", c), _rps(e2e, other, c)
            goals.append(
                _goal(
                    f"e2e c={c}: httpool >= {target:g}x {other}",
                    ratio(a, b),
                    target,
                    "",
                    f"{a:.0f} vs {b:.0f} req/s"
                    + (
                        f" (rounds {_spread(e2e, 'httpool', c)} vs {_spread(e2e, other, c)})"
                        if _spread(e2e, other, c)
                        else ""
                    ),
                )
            )
    at50, at200 = (
        _find(e2e, variant="httpool", concurrency=50),
        _find(e2e, variant="httpool", concurrency=200),
    )
    if at50 and at200:
        goal = _goal(
            "e2e: httpool at c=200 >= 0.9x its c=50, no errors",
            ratio(at200["rps"], at50["rps"]),
            0.9,
            "",
            f"{at200['rps']:.0f} vs {at50['rps']:.0f} req/s; "
            f"errors {at50['errors']} + {at200['errors']}",
        )
        if at50["errors"] or at200["errors"]:
            goal["status"] = "FAIL"
        control = _find(e2e, variant="control", concurrency=200)
        if control:
            goal["detail"] += f"; the control app (no upstream call): {control['errors']} errors"
        goals.append(goal)
    client = results.get("client") or []
    for upstream in sorted({r["upstream"] for r in client}):
        rows = [
            r
            for r in client
            if r["upstream"] == upstream and r["variant"] == "httpool" and r["concurrency"] >= 10
        ]
        if len(rows) < 2:
            continue
        low, high = min(r["rps"] for r in rows), max(r["rps"] for r in rows)
        goals.append(
            _goal(
                f"client {upstream}: httpool flat within 10% from c=10 to c=200 (min / max)",
                ratio(low, high),
                0.9,
                "",
                ", ".join(f"c={r['concurrency']}: {r['rps']:.0f}" for r in rows),
            )
        )
    h1 = _find(client, upstream=SAME_SERVER[0], variant="httpool", concurrency=H2_CONCURRENCY)
    h2 = _find(client, upstream=SAME_SERVER[1], variant="httpool", concurrency=H2_CONCURRENCY)
    if h1 and h2:
        by_round = [ratio(b, a) for a, b in zip(h1["rps_rounds"], h2["rps_rounds"], strict=False)]
        goals.append(
            _goal(
                f"client over TLS, one nginx serving both, c={H2_CONCURRENCY}: "
                "httpool HTTP/2 >= 0.8x HTTP/1.1",
                ratio(h2["rps"], h1["rps"]),
                0.8,
                "",
                f"{h2['rps']:.0f} vs {h1['rps']:.0f} req/s; by round "
                + ", ".join(f"{r:.2f}" for r in by_round),
            )
        )
    for row in results.get("connections") or []:
        if row["variant"] != "httpool":
            continue
        per_1000 = row["per_1000"]
        goals.append(
            {
                "goal": f"connections {row['upstream']} c={row['concurrency']}: "
                "httpool opens 0 per 1,000 after warm-up",
                "target": "0",
                "measured": f"{per_1000:g}",
                "status": "PASS" if per_1000 == 0 else "FAIL",
                "margin": "" if per_1000 == 0 else f"+{per_1000:g}",
                "detail": f"rounds: {row['per_1000_rounds']}",
            }
        )
    calls = (results.get("latency") or {}).get("calls", [])
    api_like = max((r["server_ms"] for r in calls), default=0)
    for row in calls:  # the claim is about API calls, so the setting with server time
        if row["label"] != "httpool pooled" or row["server_ms"] != api_like:
            continue
        goals.append(
            _goal(
                f"latency, server {row['server_ms']} ms: pooled p50 >= "
                f"{LATENCY_CLAIM_PCT:g}% faster than a new client per call",
                row["saved_vs_per_call_pct"],
                LATENCY_CLAIM_PCT,
                "%",
                f"p50 {row['p50_ms']:.1f} ms, saves {row['saved_vs_per_call_ms']:.1f} ms",
            )
        )
    return goals
