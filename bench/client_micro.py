"""Client-level cost per request of a pooled client, on a mock transport (no network).

    python -m bench.client_micro [--rounds 5] [--requests 10000]

It measures what httpool's client layer adds per request (URL merge, cookies, the
provider's transport wrapper), for the httpx and the httpx2 client of one provider.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

import httpool


def _handler(request: Any) -> Any:
    library = httpx if isinstance(request, httpx.Request) else __import__("httpx2")
    return library.Response(200, headers={"content-type": "application/json"}, content=b"{}")


async def _one(kind: Any, library: Any, rounds: int, requests: int) -> float:
    provider = httpool.Provider(
        "m",
        base_url="https://api.example.com/v1",
        headers={"Authorization": httpool.Secret("Bearer x")},
        transport=library.MockTransport(_handler),
    )
    async with httpool.ClientPool(provider) as pool:
        client = pool.client("m", kind)
        for _ in range(requests // 5):
            await client.post("/embeddings", json={"input": "x"})
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(requests):
                await client.post("/embeddings", json={"input": "x"})
            best = min(best, (time.perf_counter() - started) / requests * 1e6)
    return best


async def main(rounds: int, requests: int) -> None:
    print(f"httpx client:  {await _one(httpx.AsyncClient, httpx, rounds, requests):.1f} µs/request")
    try:
        import httpx2
    except ImportError:
        return
    best = await _one(httpx2.AsyncClient, httpx2, rounds, requests)
    print(f"httpx2 client: {best:.1f} µs/request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests))
