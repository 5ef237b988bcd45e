"""The client's own cost per request, HTTP/1.1 against HTTP/2, with no network in between.

``python -m bench.inmemory [--requests N] [--concurrency C]`` runs `httpx.AsyncClient` on
`httpool.PoolTransport` against an in-process server behind a fake network stream (no
socket, no TLS, no other process): every request gets the bench upstream's JSON body, in
one write, on a later turn of the event loop. The server is a few lines that answer from
bytes made once (no h2 or parser on its side), so nearly all the CPU time is the
client's: it prints the client's CPU microseconds per request for each protocol.

On a shared machine CPU time still moves with the neighbours' load. For a count that does
not, run it under valgrind, once with a small and once with a larger ``--requests``, and
divide the difference of the "Collected" instruction counts by the difference of the
requests::

    PYTHONHASHSEED=0 PYTHONMALLOC=malloc valgrind --tool=callgrind \\
        --callgrind-out-file=/dev/null .venv/bin/python -m bench.inmemory --only h2 --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpcore
import httpx

from .upstream import BODY

__all__ = ["main", "measure"]

H1_ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\nconnection: keep-alive\r\n\r\n"
    + BODY
)
H2_FIELDS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
    (b"date", b"Tue, 01 Dec 2026 12:00:00 GMT"),
    (b"server", b"granian"),
]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal field without indexing, new name (RFC 7541 §6.2.2); short only."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


H2_BLOCK = b"\x88" + b"".join(_literal(k, v) for k, v in H2_FIELDS)  # 0x88: ":status 200"


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    header = len(payload).to_bytes(3, "big") + bytes([kind, flags])
    return header + stream_id.to_bytes(4, "big") + payload


class _H1Server:
    """Answers every complete request head (GETs only) with `H1_ANSWER`."""

    def __init__(self) -> None:
        self.first = b""
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer + data
        heads = buffer.count(b"\r\n\r\n")
        if heads:
            buffer = buffer[buffer.rindex(b"\r\n\r\n") + 4 :]
        self._buffer = buffer
        return H1_ANSWER * heads


class _H2Server:
    """Answers every request HEADERS frame that ends its stream with `H2_BLOCK` and one
    DATA frame; acknowledges SETTINGS and PING; ignores the rest (WINDOW_UPDATE)."""

    def __init__(self) -> None:
        self.first = _frame(0x4, 0, 0, b"")  # its SETTINGS: the defaults
        self._buffer = b""
        self._preface = True

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer + data
        if self._preface:
            if len(buffer) < len(PREFACE):
                self._buffer = buffer
                return b""
            buffer, self._preface = buffer[len(PREFACE) :], False
        out: list[bytes] = []
        i = 0
        while i + 9 <= len(buffer):
            length = int.from_bytes(buffer[i : i + 3], "big")
            end = i + 9 + length
            if end > len(buffer):
                break
            kind, flags = buffer[i + 3], buffer[i + 4]
            stream_id = int.from_bytes(buffer[i + 5 : i + 9], "big") & 0x7FFF_FFFF
            if kind == 0x1 and flags & 0x1:  # HEADERS with END_STREAM: a GET
                out.append(_frame(0x1, 0x4, stream_id, H2_BLOCK))
                out.append(_frame(0x0, 0x1, stream_id, BODY))
            elif kind in (0x4, 0x6) and not flags & 0x1:  # SETTINGS or PING: acknowledge
                out.append(_frame(kind, 0x1, 0, buffer[i + 9 : end] if kind == 0x6 else b""))
            i = end
        self._buffer = buffer[i:]
        return b"".join(out)


class _Stream(httpcore.AsyncNetworkStream):
    """A network stream whose far end is a `_H1Server` or `_H2Server` in this process."""

    def __init__(self, server: _H1Server | _H2Server, clock: list[float]) -> None:
        self._server = server
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._inbox: list[bytes] = [server.first] if server.first else []
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def _deliver(self, data: bytes) -> None:
        self._inbox.append(data)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        while not self._inbox:
            if self._closed:
                return b""
            self._waiter = self._loop.create_future()
            await self._waiter
        data = b"".join(self._inbox)
        self._inbox.clear()
        if len(data) > max_bytes:
            self._inbox.append(data[max_bytes:])
            data = data[:max_bytes]
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        start = time.thread_time()
        answer = self._server.feed(buffer)
        self._clock[0] += time.thread_time() - start  # the server's time, taken off later
        if answer:
            self._loop.call_soon(self._deliver, answer)

    async def aclose(self) -> None:
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def get_extra_info(self, info: str) -> Any:
        return None


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, kind: str, clock: list[float]) -> None:
        self._kind = kind
        self._clock = clock

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        server = _H2Server() if self._kind == "h2" else _H1Server()
        return _Stream(server, self._clock)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def measure(kind: str, requests: int, concurrency: int) -> float:
    """The client's CPU microseconds per request for `kind` ("h1" or "h2")."""
    import httpool

    clock = [0.0]
    transport = httpool.PoolTransport(
        http1=kind == "h1",
        http2=kind == "h2",
        network_backend=_Backend(kind, clock),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )
    left = 0

    async with httpx.AsyncClient(transport=transport, base_url="http://bench.invalid") as client:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                response = await client.get("/embed")
                if response.status_code != 200 or response.content != BODY:
                    raise RuntimeError(f"unexpected answer {response.status_code}")

        left = 2 * concurrency  # warm-up: every connection open, HPACK tables filled
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        left, clock[0] = requests, 0.0
        start = time.thread_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        spent = time.thread_time() - start - clock[0]
    return spent / requests * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inmemory", description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--only", choices=["h1", "h2"], action="append")
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        for kind in args.only or ["h1", "h2"]:
            cost = runner.run(measure(kind, args.requests, args.concurrency))
            print(f"{kind}: {cost:.1f} µs of client CPU per request")


if __name__ == "__main__":
    main()
