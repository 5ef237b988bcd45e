"""A small HTTP/1.1 keep-alive load generator, for machines without wrk.

``python -m bench.pyload URL CONNECTIONS SECONDS`` prints one JSON line with the same keys
as `bench.wrk.parse_wrk`. Like wrk, each connection sends a request as soon as the
previous answer is read, and an answer slower than 2 s counts as a timeout (that
connection then stops).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .stats import percentile

__all__ = ["run"]

REQUEST_TIMEOUT = 2.0


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    non2xx: int = 0
    timeouts: int = 0
    socket_errors: int = 0


async def _connection(host: str, port: int, request: bytes, deadline: float, tally: _Tally) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        tally.socket_errors += 1
        return
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(request)
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
            if head[9:10] == b"2":
                tally.latencies.append(time.perf_counter() - t0)
            else:
                tally.non2xx += 1
    except TimeoutError:
        tally.timeouts += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        tally.socket_errors += 1
    finally:
        writer.close()


async def run(url: str, connections: int, duration: float) -> dict[str, Any]:
    """Load `url` and return the wrk-like figures."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    tally = _Tally()
    start = time.perf_counter()
    deadline = start + duration
    async with asyncio.timeout(duration + REQUEST_TIMEOUT + 5):
        await asyncio.gather(
            *(_connection(host, port, request, deadline, tally) for _ in range(connections))
        )
    elapsed = time.perf_counter() - start
    return {
        "tool": "python",
        "requests": len(tally.latencies) + tally.non2xx,
        "rps": len(tally.latencies) / elapsed,
        "errors": tally.non2xx + tally.timeouts + tally.socket_errors,
        "timeouts": tally.timeouts,
        "p50_ms": percentile(tally.latencies, 50) * 1000,
        "p99_ms": percentile(tally.latencies, 99) * 1000,
    }


def main() -> None:
    url, connections, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(asyncio.run(run(url, connections, duration))))


if __name__ == "__main__":
    main()
