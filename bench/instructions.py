"""Machine instructions per request, counted by valgrind: a figure the noise cannot move.

``python -m bench.instructions [--baseline REV] [--requests N] [--rounds R]`` serves the
end-to-end app (`bench.e2e_app`, uvicorn, one worker) under ``valgrind --tool=callgrind``
with counting off, sends a warm-up, turns counting on (``callgrind_control -i on``) for
`N` requests only and off again: the count divided by `N` is the cost of one request,
with nothing of start-up, warm-up or shut-down in it. Each variant runs `R` times,
rounds interleaved, and the median is reported with the spread. Variants:

- ``httpool``: the bench's app, the route taking its client from ``httpool.client("up")``;
- ``httpool-no-dependency``: the same route taking its client from
  ``httpool.get_pool(request).client("up")``, no dependency: the difference between the
  two is what the dependency costs;
- ``httpool-yield-dependency``: the route dependency in its public ``yield`` form (what
  ``httpool.client()`` gives where FastAPI's request stack is not used);
- ``control``: the same JSON answered without an upstream call (uvicorn + FastAPI alone).

With ``--limits`` it runs instead ``httpool`` beside ``httpool-limit-memory`` and
``httpool-limit-redis``: the same app with a rate limit far above what the run reaches,
kept in memory or in a redis-server the module starts on a free loopback port (Debian:
``apt-get install redis-server``): what the limiter costs a request it admits at once.

With ``--baseline REV`` the httpool variants run again on that revision's tree.

Wall-clock figures on a shared 2-core machine move by 10-20 % from one round to the next;
these counts repeat within about 0.3 % (a few thousand instructions in 1.2 million).
They are no substitute for `make bench` (an instruction is not a microsecond, and waits do
not count), but they settle whether a change adds work, and where. Needs valgrind
(Debian: ``apt-get install valgrind``, which brings ``callgrind_control``); a run takes
about 20 seconds per variant, tree and round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from .baseline import Tree, current_tree, export
from .procs import ROOT, free_port, python

__all__ = ["main", "per_request"]

WARMUP = 300  # requests before the counted ones
CONCURRENCY = 50
COLLECTED = re.compile(r"Collected : (\d+)")
REQUEST = b"GET /proxy HTTP/1.1\r\nHost: bench\r\n\r\n"
LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)


async def _load(port: int, requests: int) -> None:
    """`requests` keep-alive GETs over CONCURRENCY connections, each answer read whole."""

    async def connection(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                writer.write(REQUEST)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"the app answered {head[:40]!r}")
                match = LENGTH.search(head)
                if match is None:
                    raise RuntimeError("the app answered without a Content-Length")
                await reader.readexactly(int(match[1]))
        finally:
            writer.close()

    await asyncio.gather(*(connection(requests // CONCURRENCY) for _ in range(CONCURRENCY)))


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app under valgrind exited early: {proc.stderr}")
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                answer.read()
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app under valgrind did not answer {url} in {timeout:.0f} s")


def _callgrind(pid: int, switch: str) -> None:
    """Turn callgrind's counting in process `pid` on or off."""
    subprocess.run(["callgrind_control", "-i", switch, str(pid)], check=True, capture_output=True)


def per_request(variant: str, tree: Tree | None, upstream: str, requests: int) -> float:
    """Instructions the app ran for `requests` requests after WARMUP ones, per request."""
    port = free_port()
    env = dict(os.environ, BENCH_VARIANT=variant, BENCH_UPSTREAM=upstream)
    env["PYTHONPATH"] = os.pathsep.join([*([str(tree.src)] if tree else []), str(ROOT)])
    argv = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--instr-atstart=no",
        *python(
            "-m", "uvicorn", "bench.e2e_app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
            "--no-access-log", "--log-level", "warning",
        ),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/proxy", proc)
        if tree is not None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/__whoami") as answer:
                found = json.load(answer)["httpool_file"]
            if not found.startswith(str(tree.src)):
                raise RuntimeError(f"the app imported {found}, not the tree {tree.src}")
        asyncio.run(_load(port, WARMUP))
        _callgrind(proc.pid, "on")
        asyncio.run(_load(port, requests))
        _callgrind(proc.pid, "off")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    match = COLLECTED.search(err)
    if match is None:
        raise RuntimeError(f"valgrind reported no instruction count:\n{err[-2000:]}")
    return int(match[1]) / requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="REV", help="also run httpool as on this revision")
    parser.add_argument("--requests", type=int, default=1000, help="requests counted per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant, interleaved")
    parser.add_argument("--limits", action="store_true", help="the rate limiter's cost instead")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    if args.limits and shutil.which("redis-server") is None:
        raise SystemExit("--limits needs redis-server (Debian: apt-get install redis-server)")
    port = free_port()
    upstream = subprocess.Popen(
        python("-m", "bench.upstream", "--port", str(port)), cwd=ROOT, stdout=subprocess.DEVNULL
    )
    rows: list[dict[str, Any]] = []
    redis: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="httpool-instructions-") as tmp:
        trees: list[Tree | None] = [current_tree()]
        if args.baseline:
            trees.append(export(args.baseline, Path(tmp) / "baseline"))
        try:
            time.sleep(1.0)
            base = f"http://127.0.0.1:{port}/"
            if args.limits:
                redis_port = free_port()
                redis = subprocess.Popen(
                    ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no"],
                    stdout=subprocess.DEVNULL,
                )  # fmt: skip
                os.environ["BENCH_REDIS"] = f"redis://127.0.0.1:{redis_port}/0"
                time.sleep(0.5)
                variants = ("httpool", "httpool-limit-memory", "httpool-limit-redis")
                plan: list[tuple[str, Tree | None]] = [(v, None) for v in variants]
            else:
                plan = [(v, t) for t in trees for v in ("httpool", "httpool-no-dependency")]
                plan.append(("httpool-yield-dependency", None))
                plan.append(("control", None))
            counts: dict[str, list[float]] = {}
            for round_no in range(args.rounds):
                for variant, tree in plan:
                    label = (
                        variant if tree is None or tree.rev == "HEAD" else f"{variant}@{tree.rev}"
                    )
                    count = per_request(variant, tree, base, args.requests)
                    counts.setdefault(label, []).append(count)
                    print(f"round {round_no + 1}  {label:40s} {count / 1000:9.1f} k", flush=True)
            for label, values in counts.items():
                middle = statistics.median(values)
                rows.append({
                    "variant": label,
                    "instructions_per_request": round(middle),
                    "runs": [round(v) for v in values],
                })  # fmt: skip
                spread = (max(values) - min(values)) / 1000
                print(
                    f"{label:40s} {middle / 1000:9.1f} k instructions/request "
                    f"(median of {len(values)}, spread {spread:.1f} k)",
                    flush=True,
                )
        finally:
            upstream.terminate()
            upstream.wait(10)
            if redis is not None:
                redis.terminate()
                redis.wait(10)
    name = "instructions-limits.json" if args.limits else "instructions.json"
    out = args.out or ROOT / "bench/results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "requests": args.requests,
        "rounds": args.rounds,
        "warmup": WARMUP,
        "concurrency": CONCURRENCY,
        "counted": "the requests only (callgrind_control -i on/off around them)",
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
