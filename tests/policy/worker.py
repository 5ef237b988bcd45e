"""A worker process for the shared-limit tests: N requests through a Redis rate limit.

`python -m tests.policy.worker URL STORAGE LIMIT MARGIN REQUESTS CONCURRENCY START_AT` sends one
warm-up request (its first request pays the process's one-time costs), waits for the
wall-clock time START_AT so that every worker starts together, sends the rest and
prints the status codes it got and its rate limit's stats, as JSON, on its last line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

import httpool


async def main(
    url: str,
    storage: str,
    limit: str,
    margin: float,
    requests: int,
    concurrency: int,
    start_at: float,
) -> None:
    provider = httpool.Provider(
        "api",
        base_url=url,
        rate_limit=httpool.RateLimit(limit, storage=storage, key="test:shared", margin=margin),
        timeout=httpx.Timeout(30.0),
        warmup=concurrency,
    )
    codes: list[int] = []
    queue = list(range(requests - 1))
    async with httpool.ClientPool(provider) as pool:
        client = pool.client("api")
        codes.append((await client.get("/warmup")).status_code)
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def run() -> None:
            while queue:
                queue.pop()
                codes.append((await client.get("/a")).status_code)

        await asyncio.gather(*(run() for _ in range(concurrency)))
        stats = pool.stats()["api"]["rate_limit"]
    print(json.dumps({"codes": codes, "rate_limit": stats}))


if __name__ == "__main__":
    url, storage, limit, margin, requests, concurrency, start_at = sys.argv[1:8]
    asyncio.run(
        main(url, storage, limit, float(margin), int(requests), int(concurrency), float(start_at))
    )
