"""The results: machine and version info, JSON output, and the tables printed at the end."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .baseline import pooled
from .servers import SAME_SERVER
from .stats import ratio

__all__ = ["machine_info", "render_text", "table", "write_json"]

PACKAGES = (
    "httpool",
    "httpx",
    "httpcore",
    "h2",
    "aiohttp",
    "httpx-aiohttp",
    "fastapi",
    "starlette",
    "uvicorn",
    "granian",
    "uvloop",
    "httptools",
)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _command(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info(root: Path) -> dict[str, Any]:
    """Date, machine, load, Python and package versions, and the repo's commit."""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "versions": {name: _version(name) for name in PACKAGES},
        "wrk": " ".join(_command(["wrk", "--version"]).split()[:2]),
        "git_commit": _command(["git", "-C", str(root), "rev-parse", "--short", "HEAD"]),
    }


def _clean(value: Any) -> Any:
    """NaN becomes null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(results), indent=2) + "\n")


def _cell(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain fixed-width table."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _row(rows: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _httpool_labels(results: dict[str, Any]) -> list[str]:
    base = results.get("baseline")
    return ["httpool", base] if base else ["httpool"]


H2_CONCURRENCY = 50  # the goal: HTTP/2 over TLS >= 0.8x HTTP/1.1 over TLS at c=50


def _h2_over_h1(results: dict[str, Any]) -> str:
    """Client level at c=50: each HTTP/2-capable variant over TLS, HTTP/2 ÷ HTTP/1.1,
    against the two different servers and against one nginx serving both."""
    client = results.get("client") or []
    rows = []
    for h1_kind, h2_kind in (("h1-tls", "h2-tls"), SAME_SERVER):
        for variant in [*_httpool_labels(results), "httpx"]:
            h1 = _row(client, upstream=h1_kind, concurrency=H2_CONCURRENCY, variant=variant)
            h2 = _row(client, upstream=h2_kind, concurrency=H2_CONCURRENCY, variant=variant)
            if h1 and h2:
                by_round = map(ratio, h2["rps_rounds"], h1["rps_rounds"])
                rows.append(
                    [
                        f"{h2_kind} ÷ {h1_kind}",
                        variant,
                        _cell(h1["rps"]),
                        _cell(h2["rps"]),
                        _cell(ratio(h2["rps"], h1["rps"]), 2),
                        _by_round(list(by_round)),
                    ]
                )
    if not rows:
        return ""
    headers = ["upstreams", "variant", "HTTP/1.1 req/s", "HTTP/2 req/s", "h2 ÷ h1", "by round"]
    return (
        f"HTTP/2 over TLS against HTTP/1.1 over TLS, client level at c={H2_CONCURRENCY} "
        "(median of rounds)\n" + table(headers, rows)
    )


def _by_round(values: Sequence[float | None]) -> str:
    """``median (min-max)`` of per-round ratios, or the one value of a single round."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if len(finite) < 2:
        return _cell(finite[0], 2) if finite else "n/a"
    return f"{statistics.median(finite):.2f} ({min(finite):.2f}-{max(finite):.2f})"


def _against_baseline(results: dict[str, Any]) -> str:
    """httpool against httpool@REV in every client and e2e cell, and both against aiohttp."""
    base = results.get("baseline")
    if not base:
        return ""
    cells: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = []
    client = results.get("client") or []
    for upstream, c in dict.fromkeys((r["upstream"], r["concurrency"]) for r in client):
        match = {"upstream": upstream, "concurrency": c}
        new, old = _row(client, variant="httpool", **match), _row(client, variant=base, **match)
        cells.append((f"client {upstream}", str(c), new, old))
    e2e = results.get("e2e") or []
    for c in dict.fromkeys(r["concurrency"] for r in e2e):
        new, old = (
            _row(e2e, variant="httpool", concurrency=c),
            _row(e2e, variant=base, concurrency=c),
        )
        cells.append(("e2e", str(c), new, old))
    rows = [
        [
            where,
            c,
            _cell(new["rps"]),
            _cell(old["rps"]),
            _cell(new["over_baseline"], 2),
            _by_round(new["over_baseline_rounds"]),
            _cell(new["over_aiohttp"], 2),
            _cell(old["over_aiohttp"], 2),
        ]
        for where, c, new, old in cells
        if new and old
    ]
    if not rows:
        return ""
    groups: dict[str, list[float]] = {}
    for where, _, new, old in cells:
        if new and old:
            groups.setdefault(where, []).extend(new["over_baseline_rounds"])
    pooled_rows = []
    for where, ratios in groups.items():
        mean, low, high = pooled(ratios)
        interval = f"{low:.2f}-{high:.2f}" if not math.isnan(low) else "n/a"
        pooled_rows.append([where, "all", f"{mean:.2f}", interval, str(len(ratios))])
    trees = results.get("trees") or {}
    lines = [f"httpool against {base} (median of interleaved rounds)"]
    for label, tree in trees.items():
        dirty = " + uncommitted changes" if tree.get("uncommitted_changes") else ""
        lines.append(f"  {label}: {tree['rev']} = {tree['commit'][:12]}{dirty}")
    headers = ["section", "c", "httpool", base, "new ÷ old", "by round", "new ÷ aiohttp"]
    pooled_headers = ["section", "c", "new ÷ old", "±2 SE", "rounds"]
    return (
        "\n".join(lines)
        + "\n"
        + table([*headers, "old ÷ aiohttp"], rows)
        + "\n\nnew ÷ old pooled over the concurrencies: geometric mean of the per-round "
        "ratios, ±2 standard errors\n" + table(pooled_headers, pooled_rows)
    )


def render_text(results: dict[str, Any]) -> str:
    """Every section as a text table, then the goals with PASS/FAIL."""
    parts: list[str] = []
    client = results.get("client") or []
    if client:
        rows = [
            [
                r["upstream"],
                str(r["concurrency"]),
                r["variant"],
                _cell(r["rps"]) if r["supported"] else "n/a (HTTP/1.1 only)",
                _cell(r["p50_ms"], 2),
                _cell(r["p99_ms"], 2),
                str(r["errors"]),
                _cell(r["httpool_over_variant"], 2),
            ]
            for r in client
        ]
        headers = ["upstream", "c", "variant", "req/s", "p50 ms", "p99 ms", "errors"]
        parts.append("Client level (median of rounds)\n" + table([*headers, "httpool ÷"], rows))
    e2e = results.get("e2e") or []
    if e2e:
        rows = [
            [
                str(r["concurrency"]),
                r["variant"],
                _cell(r["rps"]),
                _cell(r["p50_ms"], 1),
                _cell(r["p99_ms"], 1),
                f"{r['errors']} ({r['timeouts']} timeouts)",
                _cell(r["upstream_connections_per_1000"], 1),
                _cell(r["httpool_over_variant"], 2),
            ]
            for r in e2e
        ]
        headers = ["c", "variant", "req/s", "p50 ms", "p99 ms", "errors", "upstream conn/1000"]
        parts.append(
            f"End to end, FastAPI + uvicorn, loaded by {e2e[0]['tool']} (median of rounds)\n"
            + table([*headers, "httpool ÷"], rows)
        )
    through = results.get("proxy")
    if through:
        rps = through["median_rps"]
        parts.append(
            f"Client level through a local CONNECT proxy, {through['requests']} GETs at "
            f"concurrency {through['concurrency']} (median of rounds)\n"
            + table(
                ["client", "req/s"],
                [
                    ["httpool", _cell(rps["httpool"])],
                    ["httpx.AsyncClient(proxy=...)", _cell(rps["httpx"])],
                    ["httpool ÷ httpx", _cell(through["httpool_over_httpx"], 2)],
                ],
            )
        )
    conns = results.get("connections") or []
    if conns:
        rows = [
            [r["upstream"], str(r["concurrency"]), r["variant"], _cell(r["per_1000"], 1)]
            for r in conns
        ]
        parts.append(
            "Upstream connections opened per 1,000 requests after warm-up (counted by the server)\n"
            + table(["upstream", "c", "variant", "per 1,000"], rows)
        )
    latency = results.get("latency") or {}
    if latency.get("calls"):
        rows = [
            [
                str(r["server_ms"]),
                r["label"],
                str(r["n"]),
                _cell(r["p50_ms"], 1),
                _cell(r["p99_ms"], 1),
                f"{r['saved_vs_per_call_pct']:.0f}% ({r['saved_vs_per_call_ms']:.1f} ms)",
            ]
            for r in latency["calls"]
        ]
        parts.append(
            f"Latency over TLS through a proxy adding {latency['delay_ms']:g} ms each way\n"
            + table(
                ["server ms", "client", "calls", "p50 ms", "p99 ms", "faster than per call"], rows
            )
        )
    if latency.get("first_request"):
        rows = [
            [r["label"], str(r["n"]), _cell(r["cold_ms"], 1), _cell(r["warm_ms"], 1), r["note"]]
            for r in latency["first_request"]
        ]
        parts.append(
            "First request (median): a fresh client's first call, and its second call\n"
            + table(["client", "runs", "first call ms", "second call ms", "note"], rows)
        )
    parts += [p for p in (_h2_over_h1(results), _against_baseline(results)) if p]
    goals = results.get("goals") or []
    if goals:
        rows = [
            [g["status"], g["goal"], g["measured"], g["target"], g["margin"], g["detail"]]
            for g in goals
        ]
        parts.append(
            "Goals\n" + table(["", "goal", "measured", "target", "margin", "detail"], rows)
        )
    return "\n\n".join(parts)
