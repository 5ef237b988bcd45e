"""The results: machine and version info, JSON output, and the tables printed at the end."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

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
