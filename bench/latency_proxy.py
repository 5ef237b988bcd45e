"""A TCP proxy that adds network latency, to make loopback look like a distant API.

``python -m bench.latency_proxy --port P --target HOST:PORT --delay-ms 20``

Every chunk is delivered `delay` after it was read, in each direction, in order (so a
round trip costs 2 x delay). The kernel completes the client's TCP handshake with the
proxy at once, so the proxy emulates it: nothing the client sends is forwarded before
one round trip after the connection was accepted. A new connection therefore pays one
round trip for TCP, then TLS's round trips, then the request's own, as it would over a
real network; a reused one pays only the request's. The proxy does not look inside the
bytes, so TLS runs end to end between the client and the upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

__all__ = ["serve"]

_CHUNK = 65536


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    not_before: float,
) -> None:
    """Copy `reader` to `writer`, each chunk `delay` seconds late, until EOF."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(_CHUNK)
            queue.put_nowait((max(loop.time(), not_before) + delay, data))
            if not data:
                break
        await sender
    finally:
        sender.cancel()


async def serve(port: int, target: tuple[str, int], delay: float) -> None:
    """Proxy 127.0.0.1:`port` to `target`, adding `delay` seconds each way."""
    loop = asyncio.get_running_loop()

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        accepted = loop.time()
        u_writer: asyncio.StreamWriter | None = None
        try:
            u_reader, u_writer = await asyncio.open_connection(*target)
            await asyncio.gather(
                _pipe(c_reader, u_writer, delay, accepted + 2 * delay),
                _pipe(u_reader, c_writer, delay, accepted),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (c_writer, u_writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(OSError):
                        await w.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args()
    host, _, target_port = args.target.rpartition(":")
    coro = serve(args.port, (host, int(target_port)), args.delay_ms / 1000)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
