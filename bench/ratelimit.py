"""Bench section ``ratelimit``: four uvicorn workers against an API that allows 200 req/s.

The stub API (one uvicorn process) admits 200 requests in any 1 s window, counted by
arrival, and answers 429 with ``Retry-After`` and OpenAI-style headers above that. The
app (``uvicorn --workers 4``) relays ``GET /call`` to it through one httpool provider:

- ``none``: no rate limit: every worker sends what it gets;
- ``memory``: ``rate_limit="50/second"`` in each worker (200 shared out by hand);
- ``redis``: ``RateLimit("200/second", storage=redis)``, one limit for all workers.

For each: requests/s that succeed, 429s drawn at the stub, p99 latency of the app. Then
the limiter's overhead when its limit is never reached: the same app (one worker
process each, as two cores hold no more) against an unlimited path, without a limit,
with a huge in-memory limit and with a huge Redis one (`1000000/minute`, leased), in
interleaved rounds: the app process's CPU time per request (read from /proc, which the
machine's other load moves far less than requests/s) and its requests/s, each also as
a ratio to the no-limit app in the same round.

``python -m bench --only ratelimit``, or on its own ``python -m bench.ratelimit``.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Annotated, Any, Final

import httpx

import httpool

from .procs import ROOT, Child, Supervisor, free_port, python
from .wrk import load, tool_name

__all__ = ["create_app", "run", "stub_app"]

LIMIT: Final = 200  # requests per second the stub API admits
MODES: Final = ("none", "memory", "redis")
OVERHEAD_MODES: Final = ("none", "huge-memory", "huge-redis")
WORKERS: Final = 4
CONNECTIONS: Final = 64
SECONDS: Final = 8.0
OVERHEAD_SECONDS: Final = 4.0
OVERHEAD_ROUNDS: Final = 7
OVERHEAD_WORKERS: Final = 1

# -- the stub API -----------------------------------------------------------------------

_admitted: collections.deque[float] = collections.deque()
_counts = {"ok": 0, "limited": 0}


async def stub_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """200 per moving second by arrival on `/v1/limited`; `/v1/free` has no limit;
    `/stats` answers the counts so far."""
    if scope["type"] != "http":
        while True:
            kind = (await receive())["type"]
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return
    now = time.monotonic()
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    status = 200
    if scope["path"] == "/stats":
        body = json.dumps(_counts).encode()
    else:
        if scope["path"] == "/v1/limited":
            while _admitted and _admitted[0] <= now - 1.0:
                _admitted.popleft()
            if len(_admitted) >= LIMIT:
                status = 429
                reset = _admitted[0] + 1.0 - now
                headers += [
                    (b"retry-after", b"1"),
                    (b"x-ratelimit-remaining-requests", b"0"),
                    (b"x-ratelimit-reset-requests", f"{reset:.3f}s".encode()),
                ]
            else:
                _admitted.append(now)
        _counts["ok" if status == 200 else "limited"] += 1
        body = b'{"id": "x"}'
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- the app ----------------------------------------------------------------------------

Client = Annotated[httpx.AsyncClient, httpool.client("api")]


def create_app() -> Any:
    """The app of one bench cell, set by `BENCH_RL_MODE`, `BENCH_RL_UPSTREAM`,
    `BENCH_RL_REDIS` and `BENCH_RL_PATH`."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    mode = os.environ["BENCH_RL_MODE"]
    redis = os.environ.get("BENCH_RL_REDIS", "")
    path = os.environ.get("BENCH_RL_PATH", "/v1/limited")
    rate_limit: Any = {
        "none": None,
        "memory": f"{LIMIT // WORKERS}/second",
        "redis": httpool.RateLimit(f"{LIMIT}/second", storage=redis),
        "huge-memory": "1000000/minute",
        "huge-redis": httpool.RateLimit("1000000/minute", storage=redis),
    }[mode]
    provider = httpool.Provider(
        "api", base_url=os.environ["BENCH_RL_UPSTREAM"], rate_limit=rate_limit
    )
    app = FastAPI(lifespan=httpool.lifespan(provider))

    @app.get("/call")
    async def call(client: Client) -> Response:
        upstream = await client.get(path)
        return Response(upstream.content, status_code=upstream.status_code)

    return app


# -- the driver -------------------------------------------------------------------------


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def _start_stub(sup: Supervisor) -> tuple[Any, int]:
    """The stub API (uvicorn, `stub_app`) on a free port: its process and the port."""
    port = free_port()
    stub = sup.start(
        "ratelimit-stub",
        python(
            "-m", "uvicorn", "bench.ratelimit:stub_app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning",
        ),
        port=port,
    )  # fmt: skip
    return stub, port


def _start_redis(sup: Supervisor) -> tuple[Child, str] | None:
    if shutil.which("redis-server") is None:
        print("  redis-server is not installed: the redis cells are skipped", file=sys.stderr)
        return None
    port = free_port()
    argv = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no",
    ]  # fmt: skip
    return sup.start("ratelimit-redis", argv, port=port), f"redis://127.0.0.1:{port}/0"


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds the process `pid` has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_app(
    sup: Supervisor, mode: str, upstream: str, redis: str, path: str, workers: int = WORKERS
) -> tuple[Child, str]:
    port = free_port()
    argv = python(
        "-m", "uvicorn", "bench.ratelimit:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--lifespan", "on", "--no-access-log", "--log-level", "warning",
    )  # fmt: skip
    env = {
        "BENCH_RL_MODE": mode,
        "BENCH_RL_UPSTREAM": upstream,
        "BENCH_RL_REDIS": redis,
        "BENCH_RL_PATH": path,
        "WEB_CONCURRENCY": str(workers),
    }
    child = sup.start(f"ratelimit-app-{mode}", argv, port=port, env=env)
    url = f"http://127.0.0.1:{port}/call"
    deadline = time.monotonic() + 30
    while True:  # every worker up: a few calls answer
        try:
            with urllib.request.urlopen(url, timeout=5):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    time.sleep(1.5)  # the stub's window of these first calls passes
    return child, url


def run(
    sup: Supervisor,
    seconds: float = SECONDS,
    overhead_seconds: float = OVERHEAD_SECONDS,
    *,
    overhead_rounds: int = OVERHEAD_ROUNDS,
    overhead_only: bool = False,
) -> dict[str, Any]:
    """The three limit cells and the overhead cells (only the latter with
    `overhead_only`); every process is stopped after."""
    stub, port = _start_stub(sup)
    upstream = f"http://127.0.0.1:{port}"
    redis = _start_redis(sup)
    rows: list[dict[str, Any]] = []
    overhead: list[dict[str, Any]] = []
    try:
        for mode in () if overhead_only else MODES:
            if mode == "redis" and redis is None:
                continue
            child, url = _start_app(sup, mode, upstream, redis[1] if redis else "", "/v1/limited")
            try:
                before, started = _get(f"{upstream}/stats"), time.monotonic()
                result = load(url, CONNECTIONS, seconds)
                time.sleep(1.0)  # let the requests still queued in the app end
                after, elapsed = _get(f"{upstream}/stats"), time.monotonic() - started
            finally:
                sup.stop(child)
            row = {
                "mode": mode,
                "ok_rps": (after["ok"] - before["ok"]) / elapsed,
                "upstream_429": after["limited"] - before["limited"],
                "app_rps": result["rps"],
                "errors": result["errors"],
                "p99_ms": result["p99_ms"],
                "tool": result["tool"],
            }
            rows.append(row)
            print(
                f"  ratelimit {mode:7} {row['ok_rps']:6.0f} ok req/s at the API  "
                f"429s drawn {row['upstream_429']:6}  p99 {row['p99_ms']:7.1f} ms",
                file=sys.stderr,
            )
        apps = {
            mode: _start_app(
                sup, mode, upstream, redis[1] if redis else "", "/v1/free", OVERHEAD_WORKERS
            )
            for mode in OVERHEAD_MODES
            if mode != "huge-redis" or redis is not None
        }
        try:
            rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in apps}
            for _, url in apps.values():
                load(url, CONNECTIONS, 1.0)  # warm-up
            for r in range(overhead_rounds):  # interleaved, so drifts in the machine's load
                order = list(apps) if r % 2 == 0 else list(reversed(apps))
                for mode in order:  # hit every mode alike, in both orders
                    child, url = apps[mode]
                    cpu = _cpu_seconds(child.proc.pid)
                    result = load(url, CONNECTIONS, overhead_seconds)
                    cpu = _cpu_seconds(child.proc.pid) - cpu
                    result["cpu_us"] = cpu / max(1, result["requests"]) * 1e6
                    rounds[mode].append(result)
                    print(
                        f"  overhead round {r + 1} {mode:11} {result['rps']:7.0f} req/s  "
                        f"{result['cpu_us']:6.0f} µs CPU a request  "
                        f"p99 {result['p99_ms']:.1f} ms",
                        file=sys.stderr,
                    )
        finally:
            for child, _ in apps.values():
                sup.stop(child)
        none = rounds.get("none", [])
        for mode, results in rounds.items():
            overhead.append(
                {
                    "mode": mode,
                    "rps": statistics.median(x["rps"] for x in results),
                    "cpu_us": statistics.median(x["cpu_us"] for x in results),
                    "p99_ms": statistics.median(x["p99_ms"] for x in results),
                    "rounds_rps": [round(x["rps"]) for x in results],
                    "rounds_cpu_us": [round(x["cpu_us"], 1) for x in results],
                    # paired with the no-limit app's figure of the same round
                    "rps_vs_none_paired": statistics.median(
                        x["rps"] / n["rps"] - 1 for x, n in zip(results, none, strict=True)
                    )
                    if none
                    else None,
                    "cpu_vs_none_paired": statistics.median(
                        x["cpu_us"] / n["cpu_us"] - 1 for x, n in zip(results, none, strict=True)
                    )
                    if none
                    else None,
                }
            )
    finally:
        sup.stop(stub)
        if redis is not None:
            sup.stop(redis[0])
    base = next((o["rps"] for o in overhead if o["mode"] == "none"), None)
    for o in overhead:
        o["vs_none"] = o["rps"] / base - 1 if base else None
    return {
        "limit_rps": LIMIT,
        "workers": WORKERS,
        "overhead_workers": OVERHEAD_WORKERS,
        "connections": CONNECTIONS,
        "seconds": seconds,
        "tool": tool_name(),
        "rows": rows,
        "overhead": overhead,
    }


FOCUSED_REQUESTS: Final = 3000
FOCUSED_CALLERS: Final = 32


async def _focused_round(url: str, mode: str, redis: str) -> dict[str, float]:
    """`FOCUSED_REQUESTS` calls from this process through one provider: wall and CPU
    seconds."""
    import anyio

    rate_limit: Any = {
        "none": None,
        "huge-memory": "1000000/minute",
        "huge-redis": httpool.RateLimit("1000000/minute", storage=redis, key="bench:focused"),
    }[mode]
    provider = httpool.Provider("api", base_url=url, rate_limit=rate_limit)
    async with httpool.ClientPool(provider) as pool:
        client = pool.client("api")
        for _ in range(50):  # warm: connections open, the first lease taken
            await client.get("/v1/free")
        left = FOCUSED_REQUESTS

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                (await client.get("/v1/free")).raise_for_status()

        wall, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as group:
            for _ in range(FOCUSED_CALLERS):
                group.start_soon(caller)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"rps": FOCUSED_REQUESTS / wall, "cpu_us": cpu / FOCUSED_REQUESTS * 1e6}


def focused(sup: Supervisor, rounds: int) -> dict[str, Any]:
    """The limiter's overhead in one client process against the local API's path
    without a limit: interleaved rounds of each mode, medians of req/s and of the
    client's CPU time per request."""
    import anyio

    stub, port = _start_stub(sup)
    redis = _start_redis(sup)
    modes = [m for m in OVERHEAD_MODES if m != "huge-redis" or redis is not None]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    try:
        for r in range(rounds):
            for mode in modes:
                result = anyio.run(
                    _focused_round, f"http://127.0.0.1:{port}", mode, redis[1] if redis else ""
                )
                results[mode].append(result)
                print(
                    f"  focused round {r + 1} {mode:11} {result['rps']:7.0f} req/s  "
                    f"{result['cpu_us']:6.0f} us CPU a request",
                    file=sys.stderr,
                )
    finally:
        sup.stop(stub)
        if redis is not None:
            sup.stop(redis[0])
    out: list[dict[str, Any]] = []
    for mode, rows in results.items():
        out.append(
            {
                "mode": mode,
                "rps": statistics.median(x["rps"] for x in rows),
                "cpu_us": statistics.median(x["cpu_us"] for x in rows),
                "rounds_rps": [round(x["rps"]) for x in rows],
                "rounds_cpu_us": [round(x["cpu_us"]) for x in rows],
            }
        )
    base = out[0]
    for o in out:
        o["rps_vs_none"] = o["rps"] / base["rps"] - 1
        o["cpu_vs_none"] = o["cpu_us"] / base["cpu_us"] - 1
    return {"requests": FOCUSED_REQUESTS, "callers": FOCUSED_CALLERS, "rows": out}


LIMITER_ADMISSIONS: Final = 20000


async def _limiter_round(mode: str, redis: str) -> float:
    """CPU microseconds per admission of `LIMITER_ADMISSIONS` through the limiter alone
    (32 callers, no HTTP): its own cost, which a request pays on top of its own."""
    import anyio

    from httpool._policy._ratelimit import RateLimiter

    storage = "memory://" if mode == "huge-memory" else redis
    limit = httpool.RateLimit("1000000/minute", storage=storage, key="bench:limiter")
    limiter = RateLimiter(limit, "api")

    async def gate() -> None:
        pass

    left = LIMITER_ADMISSIONS

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await limiter.acquire(1, None, gate)

    cpu = time.process_time()
    async with anyio.create_task_group() as group:
        for _ in range(FOCUSED_CALLERS):
            group.start_soon(caller)
    cpu = time.process_time() - cpu
    await limiter.aclose()
    return cpu / LIMITER_ADMISSIONS * 1e6


def limiter_cost(sup: Supervisor, rounds: int) -> dict[str, Any]:
    """The limiter's own CPU time per admission, in memory and in Redis, medians."""
    import anyio

    redis = _start_redis(sup)
    modes = ["huge-memory"] + (["huge-redis"] if redis is not None else [])
    results: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for _ in range(rounds):
            for mode in modes:
                results[mode].append(anyio.run(_limiter_round, mode, redis[1] if redis else ""))
    finally:
        if redis is not None:
            sup.stop(redis[0])
    return {
        mode: {"cpu_us": statistics.median(v), "rounds_cpu_us": [round(x, 1) for x in v]}
        for mode, v in results.items()
    }


def plot(results: dict[str, Any], out: Path) -> Path:
    """A bar chart: successful req/s at the API and 429s drawn, per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    labels = {
        "none": "no limit",
        "memory": "in-process\n(50/s x 4)",
        "redis": "Redis\n(200/s shared)",
    }
    names = [labels[r["mode"]] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    left.bar(names, [r["app_rps"] for r in rows], color="#3949ab")
    left.axhline(results["limit_rps"], color="#b42318", linestyle="--", linewidth=1)
    left.set_title("successful req/s (the API allows 200)", fontsize=9)
    right.bar(names, [r["upstream_429"] / results["seconds"] for r in rows], color="#b42318")
    right.set_title("429s drawn per second", fontsize=9)
    for axis in (left, right):
        axis.tick_params(labelsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out / "ratelimit.png" if out.suffix == "" else out
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    """Run the section on its own; print the JSON, write the plot into docs/img/bench.

    `python -m bench.ratelimit --plot` re-plots the last results without running;
    `python -m bench.ratelimit --overhead [ROUNDS]` measures only the limiter's overhead
    (interleaved rounds of 4 s, 5 by default), prints it and writes
    `bench/results/ratelimit-overhead.json`; `--focused [ROUNDS]` measures it in one
    client process (req/s and CPU time a request, 7 rounds by default) and writes
    `bench/results/ratelimit-focused.json`; `--limiter [ROUNDS]` prints the limiter's
    own CPU time per admission, without HTTP.
    """
    out = ROOT / "bench" / "results" / "ratelimit.json"
    if sys.argv[1:] == ["--plot"]:
        print(plot(json.loads(out.read_text()), ROOT / "docs" / "img" / "bench"), file=sys.stderr)
        return
    if sys.argv[1:2] == ["--focused"]:
        rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
        with (
            tempfile.TemporaryDirectory(prefix="httpool-bench-") as tmp,
            Supervisor(Path(tmp)) as sup,
        ):
            focused_results = focused(sup, rounds)
        print(json.dumps(focused_results, indent=2))
        path = out.with_name("ratelimit-focused.json")
        path.write_text(json.dumps(focused_results, indent=2) + "\n")
        return
    if sys.argv[1:2] == ["--limiter"]:
        rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
        with (
            tempfile.TemporaryDirectory(prefix="httpool-bench-") as tmp,
            Supervisor(Path(tmp)) as sup,
        ):
            print(json.dumps(limiter_cost(sup, rounds), indent=2))
        return
    if sys.argv[1:2] == ["--overhead"]:
        rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
        with (
            tempfile.TemporaryDirectory(prefix="httpool-bench-") as tmp,
            Supervisor(Path(tmp)) as sup,
        ):
            results = run(sup, overhead_rounds=rounds, overhead_only=True)
        print(json.dumps(results["overhead"], indent=2))
        path = out.with_name("ratelimit-overhead.json")
        path.write_text(json.dumps(results, indent=2) + "\n")
        return
    with tempfile.TemporaryDirectory(prefix="httpool-bench-") as tmp, Supervisor(Path(tmp)) as sup:
        results = run(sup)
    print(json.dumps(results, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(plot(results, ROOT / "docs" / "img" / "bench"), file=sys.stderr)


if __name__ == "__main__":
    main()
