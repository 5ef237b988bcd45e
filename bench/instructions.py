"""Machine instructions per request, counted by valgrind: a figure the noise cannot move.

``python -m bench.instructions [--baseline REV] [--requests N]`` serves the end-to-end
app (`bench.e2e_app`, uvicorn, one worker) under ``valgrind --tool=callgrind`` and counts
the instructions its process runs. Each app is run twice, for a small and a large number
of requests after the same warm-up; the difference divided by the difference in requests
is the cost of one request, start-up and shut-down cancelling out. Variants:

- ``httpool``: the bench's app, the route taking its client from
  ``httpool.client("up")`` (FastAPI's dependency with ``yield``);
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
instruction counts repeat within about 0.5 % when the machine does little else (other
load changes how many events one turn of the event loop takes and moves them by a few
per cent: compare variants run under the same load). They are no substitute for `make bench`
(an instruction is not a microsecond, and waits do not count), but they settle whether a
change adds work, and where. Needs valgrind (Debian: ``apt-get install valgrind``); a run
of the default size takes about 2 minutes per variant and tree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
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

WARMUP = 200  # requests before the counted ones, in both runs
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


def _instructions(variant: str, tree: Tree | None, upstream: str, requests: int) -> int:
    """Instructions the app process ran for WARMUP + `requests` requests, start to stop."""
    port = free_port()
    env = dict(os.environ, BENCH_VARIANT=variant, BENCH_UPSTREAM=upstream)
    env["PYTHONPATH"] = os.pathsep.join([*([str(tree.src)] if tree else []), str(ROOT)])
    argv = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
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
        asyncio.run(_load(port, requests))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    match = COLLECTED.search(err)
    if match is None:
        raise RuntimeError(f"valgrind reported no instruction count:\n{err[-2000:]}")
    return int(match[1])


def per_request(variant: str, tree: Tree | None, upstream: str, requests: int) -> float:
    """Instructions per request: (count(requests) - count(requests / 5)) / (4/5 requests)."""
    small = requests // 5
    low = _instructions(variant, tree, upstream, small)
    high = _instructions(variant, tree, upstream, requests)
    return (high - low) / (requests - small)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="REV", help="also run httpool as on this revision")
    parser.add_argument("--requests", type=int, default=1500, help="requests in the large run")
    parser.add_argument("--limits", action="store_true", help="the rate limiter's cost instead")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
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
            for variant, tree in plan:
                label = variant if tree is None or tree.rev == "HEAD" else f"{variant}@{tree.rev}"
                count = per_request(variant, tree, base, args.requests)
                rows.append({"variant": label, "instructions_per_request": round(count)})
                print(f"{label:40s} {count / 1000:9.1f} k instructions/request", flush=True)
        finally:
            upstream.terminate()
            upstream.wait(10)
            if redis is not None:
                redis.terminate()
                redis.wait(10)
    name = "instructions-limits.json" if args.limits else "instructions.json"
    out = args.out or ROOT / "bench/results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"requests": args.requests, "warmup": WARMUP, "concurrency": CONCURRENCY}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
