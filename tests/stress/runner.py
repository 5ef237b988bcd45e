"""The stress run: many requests through the fault proxy; then check nothing leaked."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

import httpool

from .fault_proxy import FaultProxy, Faults

BODY = json.dumps({"object": "list", "data": [{"embedding": [0.1] * 16}]}).encode()


async def _upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal keep-alive HTTP/1.1 server answering every request with a small JSON body."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(BODY)).encode()
                + b"\r\n\r\n"
                + BODY
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def open_fds() -> int:
    """File descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Report:
    """What a stress run did and found."""

    requests: int
    concurrency: int
    seconds: float
    outcomes: dict[str, int]
    faults: dict[str, int]
    unexpected: list[str]
    in_use_after: int
    waiters_after: int
    active_after: int
    fds_before: int
    fds_after: int

    @property
    def ok(self) -> bool:
        """No unexpected exception, nothing checked out, no descriptor leaked."""
        return (
            not self.unexpected
            and self.in_use_after == 0
            and self.waiters_after == 0
            and self.active_after == 0
            and self.fds_after <= self.fds_before
        )


async def run(
    requests: int = 50_000, concurrency: int = 200, faults: Faults | None = None
) -> Report:
    """Send `requests` GETs and POSTs at `concurrency` through the fault proxy."""
    upstream = await asyncio.start_server(_upstream, "127.0.0.1", 0)
    proxy = FaultProxy(upstream.sockets[0].getsockname()[1], faults or Faults())
    await proxy.start()
    fds_before = open_fds()
    provider = httpool.Provider(
        "stress",
        base_url=f"http://127.0.0.1:{proxy.port}",
        http2=False,
        timeout=httpx.Timeout(2.0, pool=5.0),
        limits=httpx.Limits(max_connections=100),
    )
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    remaining = requests
    started = time.perf_counter()
    pool = httpool.ClientPool(provider)
    async with pool:
        client = pool.client("stress")

        async def worker(n: int) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                try:
                    if n % 4:
                        response = await client.get("/v1/models")
                    else:
                        response = await client.post("/v1/embeddings", json={"input": ["x"]})
                    outcomes[f"status {response.status_code}"] += 1
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1
                except Exception as exc:  # what the run looks for
                    unexpected.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        stats: dict[str, Any] = pool.stats()["stress"]
        active = int(getattr(client, "active", 0))
    seconds = time.perf_counter() - started
    await proxy.stop()
    upstream.close()
    await upstream.wait_closed()
    await asyncio.sleep(0.1)
    return Report(
        requests=requests,
        concurrency=concurrency,
        seconds=round(seconds, 2),
        outcomes=dict(outcomes),
        faults=dict(proxy.counts),
        unexpected=unexpected[:20],
        in_use_after=int(stats.get("in_use", 0)),
        waiters_after=int(stats.get("waiters", 0)),
        active_after=active,
        fds_before=fds_before,
        fds_after=open_fds(),
    )
