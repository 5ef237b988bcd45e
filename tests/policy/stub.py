"""A stub provider API on loopback: it counts arrivals, enforces a limit and answers 429.

It is served by uvicorn (in a thread, or in the bench in its own process). Arrival
times are `time.monotonic()` at the stub, when the request's head was read.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..upstream import serve_app

Answer = tuple[int, dict[str, str]]


@dataclass
class Stub:
    """What the stub saw and how it answers.

    `plan` answers the next requests in order (then 200); `limit` = (requests, seconds)
    answers 429 with `Retry-After` and OpenAI-style headers to requests above it, counted
    over a moving window of arrivals it admitted; `respond`, when set, decides instead.
    """

    url: str = ""
    plan: collections.deque[Answer] = field(default_factory=collections.deque)
    limit: tuple[int, float] | None = None
    respond: Callable[[dict[str, Any]], Answer] | None = None
    arrivals: list[tuple[float, str, str, dict[str, str]]] = field(default_factory=list)
    admitted: collections.deque[float] = field(default_factory=collections.deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0
    active: int = 0
    most_active: int = 0

    def answer(self, seen: dict[str, Any]) -> Answer:
        if self.respond is not None:
            return self.respond(seen)
        if self.plan:
            return self.plan.popleft()
        if self.limit is not None:
            amount, window = self.limit
            now = seen["at"]
            while self.admitted and self.admitted[0] <= now - window:
                self.admitted.popleft()
            if len(self.admitted) >= amount:
                reset = max(0.0, self.admitted[0] + window - now)
                return 429, {
                    "retry-after": str(max(1, round(reset + 0.5))),
                    "x-ratelimit-limit-requests": str(amount),
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{reset:.3f}s",
                }
            self.admitted.append(now)
            left = amount - len(self.admitted)
            return 200, {
                "x-ratelimit-limit-requests": str(amount),
                "x-ratelimit-remaining-requests": str(left),
                "x-ratelimit-reset-requests": f"{window:.3f}s",
            }
        return 200, {}

    def times(self, path: str | None = None) -> list[float]:
        """Arrival times, of one path or of all."""
        return [t for t, _, p, _ in self.arrivals if path is None or p == path]

    def by_id(self) -> dict[str, list[float]]:
        """Arrival times per `x-req-id` header (one entry per attempt)."""
        out: dict[str, list[float]] = collections.defaultdict(list)
        for t, _, _, headers in self.arrivals:
            out[headers.get("x-req-id", "")].append(t)
        return dict(out)


def most_in_window(times: list[float], window: float) -> int:
    """The most arrivals in any window `[t, t + window)`, wherever it starts."""
    times = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + window:
            j += 1
        best = max(best, j - i)
    return best


def make_stub_app(stub: Stub) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]
                await send({"type": f"{kind}.complete"})
                if kind == "lifespan.shutdown":
                    return
        at = time.monotonic()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        while True:
            message = await receive()
            if not message.get("more_body"):
                break
        seen = {"at": at, "method": scope["method"], "path": scope["path"], "headers": headers}
        with stub.lock:
            stub.arrivals.append((at, scope["method"], scope["path"], headers))
            status, extra = stub.answer(seen)
            stub.active += 1
            stub.most_active = max(stub.most_active, stub.active)
        try:
            if stub.delay:
                await asyncio.sleep(stub.delay)
        finally:
            with stub.lock:
                stub.active -= 1
        body = json.dumps({"status": status}).encode()
        head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        head += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})

    return app


def serve_stub(stub: Stub | None = None) -> Iterator[Stub]:
    """Serve a stub on 127.0.0.1 in a thread; stop it on exit."""
    stub = stub or Stub()
    with serve_app(make_stub_app(stub)) as url:
        stub.url = url
        yield stub
