"""The client-side worker: a process of its own that runs one measurement per command.

Run as ``python -m bench.loadgen``; it reads one JSON command per line on stdin and
answers one JSON line on stdout, so the driver can interleave variants without paying
interpreter start-up for every round. Commands (``op``):

- ``rps``: open a variant; ``concurrency`` tasks send requests back to back, and after
  a warm-up a window of ``duration`` seconds is measured (see `drive`); answers
  requests, errors, req/s and latency percentiles.
- ``count``: warm up, read the upstream's connection counter, send ``requests`` at
  ``concurrency``, read it again; answers the connections opened in between.
- ``latency``: ``requests`` calls one after another, pooled or with a new client each.
- ``first``: a fresh client's first call (cold) and its second call (warm).
- ``first-pool``: the first call of a `httpool.ClientPool` whose provider has
  ``warmup=1`` (its connection opened when the pool opened).
- ``whoami``: where this process imported httpool from (``httpool.__file__``), so the
  driver can check that a baseline worker runs the tree it should.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import traceback
from typing import Any

import httpx

from .stats import percentile
from .variants import Fetch, open_client, per_request_fetch

__all__ = ["drive", "main"]


async def drive(
    fetch: Fetch,
    path: str,
    concurrency: int,
    *,
    duration: float,
    max_requests: int,
    warmup: float = 0.0,
    max_warmup: float = 0.0,
    grace: float = 1.0,
) -> dict[str, Any]:
    """`concurrency` tasks call `fetch` back to back; measure a window of `duration` s.

    The window opens after `warmup` seconds once every task has finished a first call
    (so every connection is open and the pool is in its steady state), but no later
    than `max_warmup` seconds. The tasks stop sending when it closes, or after
    `max_requests` calls. The rate counts the calls that completed inside the window,
    over the window (or up to the last call, when `max_requests` ends the run first).
    Calls still in flight when it closes get `grace` seconds, then are cancelled and
    enter the latency percentiles with the time they had waited (a lower bound).
    """
    latencies: list[float] = []
    errors: list[str] = []
    sent = in_window = first_done = 0
    start = time.perf_counter()
    opens = closes = math.inf
    last_end = start
    started_at: list[float | None] = [None] * concurrency

    async def one_task(slot: int) -> None:
        nonlocal sent, in_window, first_done, last_end
        first = True
        while sent < max_requests and time.perf_counter() < closes:
            sent += 1
            t0 = started_at[slot] = time.perf_counter()
            ok = False
            try:
                await fetch(path)
                ok = True
            except Exception as exc:
                errors.append(type(exc).__name__)
            finally:
                started_at[slot] = None
            end = time.perf_counter()
            if first:
                first, first_done = False, first_done + 1
            if ok and end >= opens:
                latencies.append(end - t0)
                if end <= closes:
                    in_window += 1
                    last_end = max(last_end, end)

    tasks = [asyncio.create_task(one_task(i)) for i in range(concurrency)]
    await asyncio.sleep(warmup)
    limit = start + max(warmup, max_warmup)
    while first_done < concurrency and time.perf_counter() < limit:
        await asyncio.sleep(0.005)
    opens = last_end = time.perf_counter()
    closes = opens + duration
    _, pending = await asyncio.wait(tasks, timeout=duration + grace)
    now = time.perf_counter()
    latencies += [now - t0 for t0 in started_at if t0 is not None]  # censored
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    span = (closes if sent < max_requests else last_end) - opens
    return {
        "requests": in_window,
        "warmup_s": opens - start,
        "cancelled_in_flight": len(pending),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "elapsed": span,
        "rps": in_window / span if span > 0 else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


async def _stats(url: str, ca: str | None) -> dict[str, int]:
    from .certs import client_context

    verify: Any = client_context(ca) if ca else True
    async with httpx.AsyncClient(verify=verify, http2=True, timeout=10) as client:
        data: dict[str, int] = (await client.get(url)).json()
        return data


async def _rps(cmd: dict[str, Any]) -> dict[str, Any]:
    async with open_client(
        cmd["variant"], cmd["base_url"], ca=cmd.get("ca"), http2=cmd.get("http2", False)
    ) as fetch:
        c = cmd["concurrency"]
        return await drive(
            fetch,
            cmd["path"],
            c,
            warmup=cmd["warmup"],
            max_warmup=cmd["max_warmup"],
            duration=cmd["duration"],
            max_requests=cmd["max_requests"],
        )


async def _count(cmd: dict[str, Any]) -> dict[str, Any]:
    c, n = cmd["concurrency"], cmd["requests"]
    async with open_client(
        cmd["variant"], cmd["base_url"], ca=cmd.get("ca"), http2=cmd.get("http2", False)
    ) as fetch:
        start = await _stats(cmd["stats_url"], cmd.get("ca"))
        # warm-up: every task sends two calls; ended by count (the time limit is a guard)
        warm = await drive(fetch, cmd["path"], c, duration=60, max_requests=2 * c, grace=30)
        before = await _stats(cmd["stats_url"], cmd.get("ca"))
        run = await drive(
            fetch, cmd["path"], c, duration=cmd["max_seconds"], max_requests=n, grace=30
        )
        after = await _stats(cmd["stats_url"], cmd.get("ca"))
    opened = after["connections"] - before["connections"]
    served = after["requests"] - before["requests"]
    return {
        "warmup_connections": before["connections"] - start["connections"],
        "opened": opened,
        "served": served,
        "per_1000": opened * 1000 / served if served else float("nan"),
        "errors": warm["errors"] + run["errors"],
    }


async def _timed(fetch: Fetch, path: str) -> float:
    t0 = time.perf_counter()
    await fetch(path)
    return (time.perf_counter() - t0) * 1000


async def _latency(cmd: dict[str, Any]) -> dict[str, Any]:
    name, base, ca, http2 = cmd["variant"], cmd["base_url"], cmd.get("ca"), cmd["http2"]
    samples: list[float] = []
    if cmd["mode"] == "per-request":
        fetch = per_request_fetch(name, base, ca=ca, http2=http2)
        samples = [await _timed(fetch, cmd["path"]) for _ in range(cmd["requests"])]
    else:
        async with open_client(name, base, ca=ca, http2=http2) as pooled:
            await pooled(cmd["path"])  # the connection is open before timing starts
            samples = [await _timed(pooled, cmd["path"]) for _ in range(cmd["requests"])]
    return {"samples_ms": samples}


async def _first(cmd: dict[str, Any]) -> dict[str, Any]:
    async with open_client(
        cmd["variant"], cmd["base_url"], ca=cmd.get("ca"), http2=cmd["http2"]
    ) as fetch:
        cold = await _timed(fetch, cmd["path"])
        warm = await _timed(fetch, cmd["path"])
    return {"cold_ms": cold, "warm_ms": warm}


async def _first_pool(cmd: dict[str, Any]) -> dict[str, Any]:
    """The first call through a `httpool.ClientPool` whose provider warms up one connection."""
    import httpool

    from .certs import client_context

    provider = httpool.Provider(
        "up",
        base_url=cmd["base_url"],
        verify=client_context(cmd["ca"]) if cmd.get("ca") else True,
        http2=cmd["http2"],
        warmup=1,
    )
    async with httpool.ClientPool(provider) as pool:
        client = pool.client("up")
        t0 = time.perf_counter()
        (await client.get(cmd["path"])).raise_for_status()
        first = (time.perf_counter() - t0) * 1000
    return {"cold_ms": first, "warm_ms": first}


async def _whoami(cmd: dict[str, Any]) -> dict[str, Any]:
    import httpool

    return {"httpool_file": httpool.__file__, "version": getattr(httpool, "__version__", None)}


_OPS = {
    "rps": _rps,
    "count": _count,
    "latency": _latency,
    "first": _first,
    "first-pool": _first_pool,
    "whoami": _whoami,
}


def main() -> None:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd.get("op") == "quit":
                break
            try:
                answer = runner.run(_OPS[cmd["op"]](cmd))
            except Exception as exc:
                traceback.print_exc()
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
