"""A scripted raw HTTP/2 server (prior knowledge, plain TCP) for the HTTP/2 misbehaviour tests.

`ScriptedH2Server` runs on the test's loop and counts what it ran by the `x-id` header a
test sends, so "ran twice" and "ran but reported failed" are measured. Knobs:

- `max_streams`: its SETTINGS_MAX_CONCURRENT_STREAMS.
- `goaway_when` / `goaway_last`: once a connection has received `goaway_when` requests,
  send a graceful GOAWAY whose last stream id is that of its `goaway_last`-th request;
  answer those up to it, never the later ones, then close.
- `refuse`: refuse this many streams (the first ones, over all connections) with
  RST_STREAM(REFUSED_STREAM).
- `silent`: stop answering anything, PINGs included, on the connections open now (a
  silently dead connection); new connections behave.

`heads` keeps every request's header block as h2 (which validates what it receives, as
RFC 9113 §8.2 asks) decoded it, never-indexed fields as `hpack.NeverIndexedHeaderTuple`.

Paths: `/` answers at once, `/slow?d=` after a pause, `/early` answers 413 as soon as the
headers arrive, then RST_STREAM(NO_ERROR), and never opens its receive window;
`/trickle?d=` takes the request body slowly (each DATA frame's window is given back `d`
seconds after it came: a slow upload), then answers;
`/hang` sends headers and a chunk and never ends; `/settings?max=N` first lowers
MAX_CONCURRENT_STREAMS to N; `/malformed?kind=K` answers with the malformed header
block `MALFORMED[K]` (h2's own checks of what it sends are off for it) and nothing
more, or with a good answer ended by a malformed trailer block when K starts with
`trailers-`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from .servers import _LoopbackServer, h2_server_connection

#: Malformed answers by kind (RFC 9113 §8.2-8.3), for `/malformed?kind=`.
MALFORMED: dict[str, list[tuple[bytes, bytes]]] = {
    "upper-case-name": [(b":status", b"200"), (b"Content-Type", b"text/plain")],
    "connection-field": [(b":status", b"200"), (b"connection", b"keep-alive")],
    "no-status": [(b"content-type", b"text/plain")],
    "space-around-value": [(b":status", b"200"), (b"x-a", b" v")],
    "pseudo-after-regular": [(b"x-a", b"v"), (b":status", b"200")],
    "trailers-pseudo": [(b":status", b"200")],
    "trailers-te": [(b"te", b"gzip")],
}


class _Conn:
    """One connection's state on the server."""

    def __init__(self, writer: asyncio.StreamWriter, h2c: Any) -> None:
        self.writer = writer
        self.h2 = h2c
        self.received: list[int] = []  # stream ids in the order their requests came
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.active = 0
        self.last: int | None = None  # the GOAWAY's last stream id, once sent
        self.silent = False

    def flush(self) -> None:
        if not self.silent:
            self.writer.write(self.h2.data_to_send())


class ScriptedH2Server(_LoopbackServer):
    """A raw HTTP/2 server whose misbehaviour a test scripts (see the module docstring)."""

    def __init__(self, *, max_streams: int = 100) -> None:
        super().__init__()
        self.max_streams = max_streams
        self.goaway_when: int | None = None
        self.goaway_last = 0
        self.refuse = 0
        self.ran: collections.Counter[str] = collections.Counter()
        self.resets: list[int] = []  # error codes of the RST_STREAMs received
        self.pings = 0
        self.max_concurrent = 0
        self.heads: list[list[tuple[bytes, bytes]]] = []
        self.body_bytes = 0  # request body bytes received, over all streams
        self._conns: list[_Conn] = []

    def go_silent(self) -> None:
        """The connections open now stop answering anything."""
        for conn in self._conns:
            conn.silent = True

    def drop_connections(self) -> None:
        """Close every connection from the server side (a FIN, no GOAWAY)."""
        for conn in self._conns:
            conn.writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accept(writer)
        h2c = h2_server_connection(self.max_streams)
        conn = _Conn(writer, h2c)
        self._conns.append(conn)
        conn.flush()
        try:
            while data := await reader.read(65536):
                if conn.silent:
                    continue
                for event in h2c.receive_data(data):
                    self._event(conn, event)
                conn.flush()
                if conn.last is not None and not conn.active:
                    return
        except (ConnectionError, h2.exceptions.ProtocolError):
            return
        finally:
            self._conns.remove(conn)
            self._gone(writer)
            writer.transport.abort()

    def _event(self, conn: _Conn, event: Any) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self.heads.append(list(event.headers))
            headers = dict(event.headers)
            conn.headers[event.stream_id] = headers
            if headers[b":path"] == b"/early":
                self._early(conn, event.stream_id)
        elif isinstance(event, h2.events.DataReceived):
            self.body_bytes += len(event.data)
            path = conn.headers.get(event.stream_id, {}).get(b":path", b"")
            if path.startswith(b"/trickle"):
                delay = float(parse_qs(urlsplit(path.decode()).query).get("d", ["0.1"])[0])
                size, sid = event.flow_controlled_length, event.stream_id
                asyncio.get_running_loop().call_later(delay, self._give_back, conn, size, sid)
            elif path != b"/early":
                conn.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self._request(conn, event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.resets.append(event.error_code)
        elif isinstance(event, h2.events.PingReceived):
            self.pings += 1

    @staticmethod
    def _give_back(conn: _Conn, size: int, stream_id: int) -> None:
        """Open the windows again by `size` (`/trickle`), if the stream still is."""
        with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
            conn.h2.acknowledge_received_data(size, stream_id)
            conn.flush()

    def _early(self, conn: _Conn, stream_id: int) -> None:
        self.ran[conn.headers[stream_id].get(b"x-id", b"").decode()] += 1
        body = b"too large"
        headers = [(b":status", b"413"), (b"content-length", str(len(body)).encode())]
        conn.h2.send_headers(stream_id, headers)
        conn.h2.send_data(stream_id, body, end_stream=True)
        conn.h2.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)

    def _request(self, conn: _Conn, stream_id: int) -> None:
        headers = conn.headers[stream_id]
        if headers[b":path"] == b"/early":
            return
        if self.refuse > 0:
            self.refuse -= 1
            conn.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        if conn.last is not None and stream_id > conn.last:
            return  # beyond the GOAWAY: never processed
        conn.received.append(stream_id)
        conn.active += 1
        self.max_concurrent = max(self.max_concurrent, conn.active)
        if self.goaway_when is not None and len(conn.received) == self.goaway_when:
            conn.last = conn.received[self.goaway_last - 1]
            conn.writer.write(GoAwayFrame(0, last_stream_id=conn.last).serialize())
            for stream in conn.received[self.goaway_last :]:
                conn.active -= 1  # not processed: never answered
                del conn.headers[stream]
            del conn.received[self.goaway_last :]
        if stream_id in conn.headers:
            answer = self._answer(conn, stream_id, conn.headers[stream_id])
            task = asyncio.get_running_loop().create_task(answer)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _malformed(conn: _Conn, stream_id: int, kind: str) -> None:
        config = conn.h2.config
        config.validate_outbound_headers = config.normalize_outbound_headers = False
        try:
            if kind.startswith("trailers-"):
                conn.h2.send_headers(stream_id, [(b":status", b"200")])
                conn.h2.send_data(stream_id, b"body")
                conn.h2.send_headers(stream_id, MALFORMED[kind], end_stream=True)
            else:  # and nothing more: the client resets the stream
                conn.h2.send_headers(stream_id, MALFORMED[kind])
        finally:
            config.validate_outbound_headers = config.normalize_outbound_headers = True
        conn.flush()

    async def _answer(self, conn: _Conn, stream_id: int, headers: dict[bytes, bytes]) -> None:
        url = urlsplit(headers[b":path"].decode())
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/slow":
            await asyncio.sleep(float(query.get("d", "0.2")))
        if conn.last is not None and stream_id > conn.last:
            conn.active -= 1
            return
        if url.path == "/settings":
            conn.h2.update_settings(
                {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: int(query["max"])}
            )
        self.ran[headers.get(b"x-id", b"").decode()] += 1
        body = str(stream_id).encode()
        with contextlib.suppress(h2.exceptions.ProtocolError):
            if url.path == "/hang":
                conn.h2.send_headers(stream_id, [(b":status", b"200")])
                conn.h2.send_data(stream_id, b"h" * 1000)
                conn.flush()
                conn.active -= 1
                return
            if url.path == "/malformed":
                self._malformed(conn, stream_id, query["kind"])
                conn.active -= 1
                return
            fields = [(b":status", b"200"), (b"content-length", str(len(body)).encode())]
            conn.h2.send_headers(stream_id, fields)
            conn.h2.send_data(stream_id, body, end_stream=True)
            conn.flush()
        conn.active -= 1
        if conn.last is not None and not conn.active:
            conn.writer.transport.close()
