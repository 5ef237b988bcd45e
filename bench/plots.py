"""PNG plots of one run's results (matplotlib, Agg backend), for docs/performance.md."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["COLORS", "write_plots"]

COLORS = {
    "httpool": "#2a7ab0",
    "httpool-httpx2": "#6fa8dc",
    "naive": "#c0392b",
    "httpx": "#c0392b",
    "httpx-aiohttp": "#8e7cc3",
    "aiohttp": "#7f8c8d",
    "control": "#d5d8dc",
}


def _nan_to_zero(value: float | None) -> float:
    return 0.0 if value is None or math.isnan(value) else value


def _client(results: list[dict[str, Any]], out: Path, plt: Any) -> Path:
    from matplotlib.ticker import ScalarFormatter

    upstreams = list(dict.fromkeys(r["upstream"] for r in results))
    fig, axes = plt.subplots(1, len(upstreams), figsize=(4.2 * len(upstreams), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], upstreams, strict=True):
        rows = [r for r in results if r["upstream"] == kind and r["supported"]]
        for variant in dict.fromkeys(r["variant"] for r in rows):
            points = sorted((r["concurrency"], r["rps"]) for r in rows if r["variant"] == variant)
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=variant, color=COLORS.get(variant))
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["concurrency"] for r in rows}))
        ax.get_xaxis().set_major_formatter(ScalarFormatter())
        ax.set_title(kind)
        ax.set_xlabel("concurrency")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("requests/s (median)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Client level: one process, one client, loopback upstream")
    return _save(fig, out / "client_rps.png", plt)


def _bars(
    ax: Any,
    groups: list[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    labels: bool = False,
) -> None:
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, [_nan_to_zero(v) for v in values], width, label=name)
        for bar in bars:
            bar.set_color(COLORS.get(name, bar.get_facecolor()))
        if labels:
            texts = ["n/a" if v is None or math.isnan(v) else f"{v:.0f}" for v in values]
            ax.bar_label(bars, labels=texts, fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(axis="y", alpha=0.3)


def _e2e(results: list[dict[str, Any]], out: Path, plt: Any) -> Path:
    concs = sorted({r["concurrency"] for r in results})
    variants = list(dict.fromkeys(r["variant"] for r in results))
    series = {
        v: [
            next(r["rps"] for r in results if r["variant"] == v and r["concurrency"] == c)
            for c in concs
        ]
        for v in variants
    }
    fig, ax = plt.subplots(figsize=(7, 3.8))
    _bars(ax, [f"{c} connections" for c in concs], series)
    ax.set_ylabel("requests/s (median)")
    ax.set_title("End to end: FastAPI route calling the upstream (uvicorn, 1 worker)")
    ax.legend(fontsize=8)
    return _save(fig, out / "e2e_rps.png", plt)


def _connections(results: dict[str, Any], out: Path, plt: Any) -> Path:
    """Left: section 3 (after warm-up); right: what the e2e runs opened upstream."""
    panels = []
    rows = results.get("connections") or []
    if rows:
        groups = list(dict.fromkeys(f"{r['upstream']} c={r['concurrency']}" for r in rows))
        variants = list(dict.fromkeys(r["variant"] for r in rows))
        series = {
            v: [
                next(
                    (
                        r["per_1000"]
                        for r in rows
                        if r["variant"] == v and f"{r['upstream']} c={r['concurrency']}" == g
                    ),
                    math.nan,
                )
                for g in groups
            ]
            for v in variants
        }
        panels.append(("client level, after warm-up", groups, series))
    e2e = [r for r in results.get("e2e") or [] if r["variant"] != "control"]
    if e2e:
        concs = sorted({r["concurrency"] for r in e2e})
        variants = list(dict.fromkeys(r["variant"] for r in e2e))
        series = {
            v: [
                next(
                    r["upstream_connections_per_1000"]
                    for r in e2e
                    if r["variant"] == v and r["concurrency"] == c
                )
                for c in concs
            ]
            for v in variants
        }
        panels.append(("end to end (wrk runs)", [f"{c} connections" for c in concs], series))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, groups, series) in zip(axes[0], panels, strict=True):
        _bars(ax, groups, series, labels=True)
        top = max([_nan_to_zero(v) for vs in series.values() for v in vs] + [1.0])
        ax.set_ylim(0, top * 1.2)
        ax.set_title(title)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("new upstream connections\nper 1,000 requests")
    fig.suptitle("Upstream connections opened, counted by the upstream server")
    return _save(fig, out / "connections.png", plt)


def _latency(latency: dict[str, Any], out: Path, plt: Any) -> Path:
    calls = latency["calls"]
    server_ms = list(dict.fromkeys(r["server_ms"] for r in calls))
    fig, axes = plt.subplots(1, len(server_ms), figsize=(5.5 * len(server_ms), 3.8), squeeze=False)
    for ax, ms in zip(axes[0], server_ms, strict=True):
        rows = [r for r in calls if r["server_ms"] == ms]
        labels = [r["label"].replace(" new client per call", "\nnew client/call") for r in rows]
        xs = range(len(rows))
        ax.bar(
            [x - 0.2 for x in xs], [r["p50_ms"] for r in rows], 0.4, label="p50", color="#2a7ab0"
        )
        ax.bar(
            [x + 0.2 for x in xs], [r["p99_ms"] for r in rows], 0.4, label="p99", color="#a9cce3"
        )
        ax.set_xticks(list(xs), labels, fontsize=7)
        ax.set_title(f"server time {ms} ms")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("ms per call")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Latency over TLS, {latency['delay_ms']:g} ms added each way")
    return _save(fig, out / "latency.png", plt)


def _first(latency: dict[str, Any], out: Path, plt: Any) -> Path:
    rows = [r for r in latency["first_request"] if r["n"]]
    labels, values, colors = [], [], []
    for r in rows:
        if r["kind"] == "client":
            labels += [f"{r['label']}\nfirst call", f"{r['label']}\nsecond call"]
            values += [r["cold_ms"], r["warm_ms"]]
            colors += ["#c0392b", "#2a7ab0"]
        else:
            labels.append(f"{r['label']}\nfirst call")
            values.append(r["cold_ms"])
            colors.append("#27ae60")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylabel("ms (median)")
    ax.set_title("First request: fresh connection versus one opened in advance")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "first_request.png", plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(results: dict[str, Any], out: Path) -> list[Path]:
    """Write one PNG per section that has results; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if results.get("client"):
        written.append(_client(results["client"], out, plt))
    if results.get("e2e"):
        written.append(_e2e(results["e2e"], out, plt))
    if results.get("connections") or results.get("e2e"):
        written.append(_connections(results, out, plt))
    latency = results.get("latency") or {}
    if latency.get("calls"):
        written.append(_latency(latency, out, plt))
    if latency.get("first_request"):
        written.append(_first(latency, out, plt))
    return written
