"""A TCP proxy on loopback that resets, delays and truncates connections at random."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Faults:
    """Per-connection odds of each fault; the rest pass through untouched."""

    reset: float = 0.02  # RST after the request arrived, before any answer
    truncate: float = 0.02  # close after part of the answer
    delay: float = 0.05  # hold the answer back for `delay_seconds`
    delay_seconds: float = 0.05
    seed: int = 1234


@dataclass
class FaultProxy:
    """Forwards 127.0.0.1:<port> to the upstream, injecting faults; counts what it did."""

    upstream_port: int
    faults: Faults = field(default_factory=Faults)
    counts: Counter[str] = field(default_factory=Counter)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._random = random.Random(self.faults.seed)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # the pipes see the end and finish on their own
        for _ in range(100):
            if not self._writers:
                break
            await asyncio.sleep(0.01)
        if self._server is not None:
            await self._server.wait_closed()

    def _pick(self) -> str:
        roll, f = self._random.random(), self.faults
        for kind, odds in (("reset", f.reset), ("truncate", f.truncate), ("delay", f.delay)):
            if roll < odds:
                return kind
            roll -= odds
        return "pass"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, faulty=False),
                self._pipe(up_reader, writer, faulty=True),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, faulty: bool
    ) -> None:
        while data := await reader.read(65536):
            kind = self._pick() if faulty else "pass"
            if faulty:
                self.counts[f"chunks {kind}"] += 1
            if kind == "reset":
                _reset(writer)
                return
            if kind == "truncate":
                writer.write(data[: max(1, len(data) // 2)])
                with contextlib.suppress(OSError):
                    await writer.drain()
                writer.close()
                return
            if kind == "delay":
                await asyncio.sleep(self.faults.delay_seconds)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
