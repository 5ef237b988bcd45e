"""A process that takes a lease of the shared limit and dies holding it.

`python -m tests.policy.holder REDIS_URL KEY UNITS` takes a lease of UNITS admissions
of `100 per 20 seconds` (margin 0.05 s) under KEY, prints `held`, and sleeps until killed.
"""

from __future__ import annotations

import asyncio
import sys

import httpool
from httpool._policy._ratelimit import RateLimiter


async def main(url: str, key: str, units: int) -> None:
    limiter = RateLimiter(
        httpool.RateLimit("100 per 20 seconds", storage=url, key=key, margin=0.05), "api"
    )
    assert limiter._log is not None
    wait = await limiter._log.take(units, 1, limiter._log.hold)
    assert wait is None
    print("held", flush=True)
    await asyncio.sleep(60)  # bounded: the test kills it long before


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
