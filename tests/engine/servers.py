"""Servers on 127.0.0.1 for the transport tests: granian and hypercorn over HTTP/2, and raw
ones on the test's loop that misbehave (HTTP/1.1 here, the scripted HTTP/2 one in
`rawh2.py`). uvicorn serves the provider-like upstream of `tests/upstream.py`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from ..servers import free_port, serve_process

HERE = Path(__file__).parent


# -- granian and hypercorn (HTTP/2 over TLS), serving h2app.py in a process -------------


@contextlib.contextmanager
def serve_granian(cert: str, key: str, *args: str) -> Iterator[int]:
    """Run granian (ASGI, TLS) as a subprocess serving `h2app:app`; yield its port."""
    port = free_port()
    granian = Path(sys.executable).parent / "granian"
    command = [str(granian), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--ssl-certificate", cert, "--ssl-keyfile", key, "--no-log", "--workers", "1"]
    command += ["--working-dir", str(HERE), *args, "h2app:app"]
    with serve_process(command, port):
        yield port


@contextlib.contextmanager
def serve_hypercorn(cert: str, key: str) -> Iterator[int]:
    """Run hypercorn (ASGI, TLS, ALPN h2) as a subprocess serving `h2app:app`; yield its port."""
    port = free_port()
    hypercorn = Path(sys.executable).parent / "hypercorn"
    command = [str(hypercorn), "--bind", f"127.0.0.1:{port}", "--certfile", cert]
    command += ["--keyfile", key, "--log-level", "error", "h2app:app"]
    with serve_process(command, port, cwd=HERE):
        yield port


# -- a raw HTTP/1.1 server that misbehaves on demand ---------------------------------------


RAW_RESPONSES: dict[str, tuple[bytes, bool]] = {
    # path: (the bytes sent, whether the server then closes the connection)
    "/eof": (b"HTTP/1.1 200 OK\r\n\r\n" + b"e" * 5000, True),
    "/http10": (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", True),
    "/close": (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", True),
    "/continue": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        False,
    ),
    "/headers": (
        b"HTTP/1.1 201 Created\r\nX-Twice: 1\r\nx-twice: 2\r\nContent-Length: 0\r\n\r\n",
        False,
    ),
    "/bad": (b"HTTP/1.1 ??? nonsense\r\n\r\n", True),
    "/short": (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"s" * 10, True),
}


class _LoopbackServer:
    """An asyncio server on 127.0.0.1 that counts the connections it accepts and holds."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self, uds: str | None = None) -> None:
        """Listen on a free port of 127.0.0.1 (or on the Unix socket `uds`)."""
        if uds is not None:
            self._server = await asyncio.start_unix_server(self._handle, uds)
            return
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening and drop every connection."""
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    def _accept(self, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self._writers.add(writer)

    def _gone(self, writer: asyncio.StreamWriter) -> None:
        self.open -= 1
        self._writers.discard(writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection; each server says how."""


class RawHTTPServer(_LoopbackServer):
    """An asyncio HTTP/1.1 server on the test's loop that counts connections.

    Knobs: `close_after` (close the connection after N responses, without saying so),
    `drop_after` (after N responses read the next request and close without answering),
    `idle_close` (close a connection idle this long). Paths: `/`, `/slow?d=`,
    `/bytes?n=` (a Content-Length body), `/chunked?n=&size=`, `/reset` (headers, some
    body, then a TCP reset), `/status?code=`, `/echo` (the request body's length), and
    the literal responses of `RAW_RESPONSES`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.close_after: int | None = None
        self.drop_after: int | None = None
        self.idle_close: float | None = None
        self.requests = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accept(writer)
        served = 0
        try:
            while True:
                request = await self._read_request(reader, self.idle_close if served else None)
                if request is None:
                    return
                if self.drop_after is not None and served >= self.drop_after:
                    return
                served += 1
                self.requests += 1
                await self._respond(*request, writer)
                if self.close_after is not None and served >= self.close_after:
                    return
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            return
        finally:
            self._gone(writer)
            writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, idle: float | None
    ) -> tuple[str, str, bytes] | None:
        async with asyncio.timeout(idle):
            line = await reader.readline()
        if not line:
            return None
        method, target, _ = line.decode().split(" ", 2)
        headers: dict[str, str] = {}
        while (raw := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = raw.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while size := int((await reader.readline()).split(b";")[0], 16):
                body += await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        return method, target, body

    async def _respond(
        self, method: str, target: str, body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        status, payload = 200, b"ok"
        if url.path in RAW_RESPONSES:
            data, close = RAW_RESPONSES[url.path]
            writer.write(data)
            await writer.drain()
            if close:
                raise ConnectionAbortedError  # ends the connection (a FIN, not a reset)
            return
        if url.path == "/slow":
            await asyncio.sleep(float(query.get("d", "0.2")))
        elif url.path == "/bytes":
            payload = b"x" * int(query.get("n", "10"))
        elif url.path == "/echo":
            payload = str(len(body)).encode()
        elif url.path == "/status":
            status, payload = int(query.get("code", "204")), b""
        elif url.path == "/chunked":
            await self._chunked(writer, int(query.get("n", "5")), int(query.get("size", "10")))
            return
        elif url.path == "/reset":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 10)
            await writer.drain()
            await asyncio.sleep(0.02)
            sock = writer.transport.get_extra_info("socket")
            with contextlib.suppress(OSError):  # unless the client is already gone
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raise ConnectionResetError
        head = f"HTTP/1.1 {status} X\r\n"
        if status not in (204, 304):
            head += f"content-length: {len(payload)}\r\n"
        writer.write(
            head.encode() + b"\r\n" + (b"" if method == "HEAD" or status in (204, 304) else payload)
        )
        await writer.drain()

    async def _chunked(self, writer: asyncio.StreamWriter, n: int, size: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(n):
            chunk = bytes([97 + i % 26]) * size
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")
        await writer.drain()


# -- a raw HTTP/2 server (prior knowledge, plain TCP) with stream limits and GOAWAY ----------


def h2_server_connection(max_streams: int) -> Any:
    """A server-side h2 connection that allows `max_streams` concurrent streams, with its
    preface and SETTINGS queued (`data_to_send()`)."""
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    conn.local_settings = h2.settings.Settings(
        client=False,
        initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams},
    )
    conn.initiate_connection()
    return conn


class RawH2Server(_LoopbackServer):
    """An h2-library server on the test's loop: `max_streams`, `delay`, `goaway_after`.

    With `goaway_after=N` a connection answers N streams, then sends a graceful GOAWAY
    naming the last stream it received, answers up to that one and ignores later streams
    (the client must send those elsewhere), then closes.
    """

    def __init__(
        self, *, max_streams: int = 100, delay: float = 0.0, goaway_after: int | None = None
    ) -> None:
        super().__init__()
        self.max_streams = max_streams
        self.delay = delay
        self.goaway_after = goaway_after
        self.max_concurrent = 0
        self.answered = 0

    def drop_connections(self) -> None:
        """Close every connection from the server side (a FIN, no GOAWAY)."""
        for writer in list(self._writers):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accept(writer)
        conn = h2_server_connection(self.max_streams)
        writer.write(conn.data_to_send())
        state = {"answered": 0, "active": 0, "last": 0, "goaway": False}
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.StreamEnded):
                        self._start(conn, writer, event.stream_id, state)
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                writer.write(conn.data_to_send())
                if state["goaway"] and not state["active"]:
                    return
        except (ConnectionError, h2.exceptions.ProtocolError):
            return
        finally:
            self._gone(writer)
            writer.transport.abort()

    def _start(
        self, conn: Any, writer: asyncio.StreamWriter, stream_id: int, state: dict[str, Any]
    ) -> None:
        if state["goaway"] and stream_id > state["last"]:
            return  # beyond the GOAWAY's last stream: never answered
        state["active"] += 1
        state["last"] = max(state["last"], stream_id)
        self.max_concurrent = max(self.max_concurrent, state["active"])
        task = asyncio.get_running_loop().create_task(self._answer(conn, writer, stream_id, state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, conn: Any, writer: asyncio.StreamWriter, stream_id: int, state: dict[str, Any]
    ) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        body = json.dumps({"stream": stream_id}).encode()
        headers = [(b":status", b"200"), (b"content-length", str(len(body)).encode())]
        with contextlib.suppress(Exception):
            conn.send_headers(stream_id, headers)
            conn.send_data(stream_id, body, end_stream=True)
            writer.write(conn.data_to_send())
            self.answered += 1
            state["answered"] += 1
        state["active"] -= 1
        if not state["goaway"] and state["answered"] == self.goaway_after:
            state["goaway"] = True  # graceful: h2's own close_connection() would stop all sending
            writer.write(GoAwayFrame(0, last_stream_id=state["last"], error_code=0).serialize())
        if state["goaway"] and not state["active"]:
            writer.transport.close()
