"""httpool's HTTP/2 connection against a scripted raw h2 server: GOAWAY, REFUSED_STREAM,
early answers, changing limits, dead connections, cancellation and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpcore
import httpx
import pytest
from hyperframe.frame import GoAwayFrame

from httpool._engine import _http2
from httpool._engine._asyncio_backend import AsyncioBackend
from httpool._engine._errors import ConnectionNotAvailable, PoolTimeout, StreamNotProcessed
from httpool._engine._transport import PoolTransport

from .conftest import assert_clean
from .messages import engine_request
from .rawh2 import ScriptedH2Server

pytestmark = pytest.mark.anyio

CANCEL = 0x8


def h2_client(
    server: ScriptedH2Server, *, timeout: float | httpx.Timeout = 5.0, **options: object
) -> tuple[PoolTransport, httpx.AsyncClient]:
    """A transport speaking HTTP/2 with prior knowledge, and a client on it."""
    transport = PoolTransport(http1=False, http2=True, **options)  # type: ignore[arg-type]
    client = httpx.AsyncClient(transport=transport, base_url=server.url, timeout=timeout)
    return transport, client


@pytest.mark.parametrize("retry_post", [False, True])
async def test_goaway_midway_runs_every_post_exactly_once(
    server: ScriptedH2Server, retry_post: bool
) -> None:
    """With a GOAWAY naming the 4th of 10 in-flight POSTs, POSTs 1-4 are answered on their
    connection and 5-10 are sent again elsewhere: each runs once, none fails."""
    server.goaway_when, server.goaway_last = 10, 4
    transport, client = h2_client(server, retry_post=retry_post)
    async with transport, client:
        posts = [
            client.post("/slow?d=0.1", content=b"job", headers={"x-id": str(i)}) for i in range(10)
        ]
        responses = await asyncio.gather(*posts)
        assert [r.status_code for r in responses] == [200] * 10
        assert server.ran == {str(i): 1 for i in range(10)}
        stats = transport.stats()
        assert stats["goaways"] == 1
        assert stats["streams_resent"] == 6
        assert stats["streams_open"] == 0
        assert stats["errors"] == {}
        assert_clean(transport)
    assert server.accepted >= 2


async def test_a_server_that_ends_connections_after_n_streams_is_learned(
    server: ScriptedH2Server,
) -> None:
    """After a GOAWAY cut off streams after 3 processed ones, new connections carry at most
    3 streams each, so later GOAWAYs cut nothing off and nothing more is re-sent."""
    server.goaway_when, server.goaway_last = 3, 3
    transport, client = h2_client(server)
    async with transport, client:
        gets = (client.get("/slow?d=0.1", headers={"x-id": str(i)}) for i in range(20))
        assert {r.status_code for r in await asyncio.gather(*gets)} == {200}
        stats = transport.stats()
        assert stats["streams_resent"] == 17
        assert stats["connections_opened"] == 1 + 6  # the 17 re-sent, 3 per connection
        gets = (client.get("/slow?d=0.1", headers={"x-id": f"b{i}"}) for i in range(9))
        assert {r.status_code for r in await asyncio.gather(*gets)} == {200}
        stats = transport.stats()
        assert stats["streams_resent"] == 17
        assert stats["connections_opened"] == 7 + 3
        assert set(server.ran.values()) == {1}
        assert len(server.ran) == 29
        assert_clean(transport)


async def test_a_learned_stream_budget_is_forgotten_in_time(
    server: ScriptedH2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A budget learned from one GOAWAY (a server shutting down, say) stops capping new
    connections once BUDGET_TTL has passed."""
    monkeypatch.setattr(_http2, "BUDGET_TTL", 0.3)
    server.goaway_when, server.goaway_last = 2, 2
    transport, client = h2_client(server)
    async with transport, client:
        gets = (client.get("/slow?d=0.05") for _ in range(6))
        assert {r.status_code for r in await asyncio.gather(*gets)} == {200}
        server.goaway_when = None
        await asyncio.sleep(0.4)
        opened = transport.stats()["connections_opened"]
        gets = (client.get("/slow?d=0.1") for _ in range(10))
        assert {r.status_code for r in await asyncio.gather(*gets)} == {200}
        assert transport.stats()["connections_opened"] - opened <= 1
        assert_clean(transport)


async def test_refused_stream_is_sent_again_whatever_the_method(
    server: ScriptedH2Server,
) -> None:
    """A POST refused with REFUSED_STREAM is sent again on another connection and runs once."""
    server.refuse = 1
    transport, client = h2_client(server)
    async with transport, client:
        response = await client.post("/", content=b"job", headers={"x-id": "a"})
        assert response.status_code == 200
        assert server.ran == {"a": 1}
        assert transport.stats()["streams_resent"] == 1


async def test_refused_again_and_again_fails_saying_not_processed(
    server: ScriptedH2Server,
) -> None:
    """A request refused on every try is re-sent once, then fails with an error that says
    the server did not process it."""
    server.refuse = 10
    transport, client = h2_client(server)
    async with transport, client:
        with pytest.raises(httpx.RemoteProtocolError, match="not processed"):
            await client.post("/", content=b"job", headers={"x-id": "a"})
        assert server.ran == {}
        assert server.refuse == 8  # the first try and one re-send
        assert transport.stats()["streams_resent"] == 1
        assert transport.stats()["errors"] == {"RemoteProtocolError": 1}
        assert_clean(transport)


async def test_streamed_body_refused_is_not_sent_again(server: ScriptedH2Server) -> None:
    """A refused request whose body was streamed (it cannot be replayed) fails at once."""
    server.refuse = 1

    async def body() -> AsyncIterator[bytes]:
        yield b"once"

    transport, client = h2_client(server)
    async with transport, client:
        with pytest.raises(httpx.RemoteProtocolError, match="not processed"):
            await client.post("/", content=body())
        assert transport.stats()["streams_resent"] == 0


async def test_early_response_then_reset_no_error_is_the_answer(server: ScriptedH2Server) -> None:
    """A 413 sent before the upload ends, then RST_STREAM(NO_ERROR), arrives as the response
    at once; another stream on the connection is not affected."""
    transport, client = h2_client(server, timeout=10.0)
    async with transport, client:
        other = asyncio.create_task(client.get("/slow?d=0.3"))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await client.post("/early", content=b"u" * (2 << 20))
        assert response.status_code == 413
        assert response.content == b"too large"
        assert loop.time() - started < 1.0  # the server does not read the body: no wait
        assert (await other).status_code == 200
        assert server.accepted == 1
        assert_clean(transport)


async def test_lowered_max_concurrent_streams_is_obeyed(server: ScriptedH2Server) -> None:
    """When the server lowers SETTINGS_MAX_CONCURRENT_STREAMS, the connection opens no more
    streams than that, and the pool opens connections for the rest."""
    server.max_streams = 50
    transport, client = h2_client(server)
    async with transport, client:
        assert (await client.get("/settings?max=2")).status_code == 200
        server.max_streams = 2  # new connections say 2 from the start
        server.max_concurrent = 0
        responses = await asyncio.gather(*(client.get("/slow?d=0.1") for _ in range(12)))
        assert all(r.status_code == 200 for r in responses)
        assert server.max_concurrent == 2
        assert server.resets == []  # nothing was refused: the limit was kept
        assert_clean(transport)
    assert server.accepted == 6  # 12 streams, 2 per connection


async def test_silently_dead_connection_is_found_by_ping_before_reuse(
    server: ScriptedH2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection idle past the PING threshold that no longer answers is given up
    before a POST is sent on it; the POST runs once on a new connection."""
    monkeypatch.setattr(_http2, "PING_AFTER", 0.1)
    monkeypatch.setattr(_http2, "PING_TIMEOUT", 0.3)
    transport, client = h2_client(server, timeout=3.0)
    async with transport, client:
        assert (await client.post("/", headers={"x-id": "1"})).status_code == 200
        server.go_silent()
        await asyncio.sleep(0.2)
        response = await client.post("/", content=b"job", headers={"x-id": "2"})
        assert response.status_code == 200
        assert server.ran == {"1": 1, "2": 1}
        assert server.accepted == 2
        assert transport.stats()["retries"] == 0
        assert_clean(transport)


async def test_busy_connection_is_not_pinged(server: ScriptedH2Server) -> None:
    """A connection in steady use sends no PING before its requests."""
    transport, client = h2_client(server)
    async with transport, client:
        for _ in range(5):
            assert (await client.get("/")).status_code == 200
    assert server.pings == 0


async def test_cancelling_one_stream_resets_it_and_leaves_the_others(
    server: ScriptedH2Server,
) -> None:
    """A cancelled request sends RST_STREAM(CANCEL); its siblings finish on the same connection."""
    transport, client = h2_client(server)
    async with transport, client:
        tasks = [asyncio.create_task(client.get("/slow?d=0.2")) for _ in range(5)]
        await asyncio.sleep(0.05)
        tasks[2].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[2], asyncio.CancelledError)
        assert [r.status_code for r in results if isinstance(r, httpx.Response)] == [200] * 4
        await asyncio.sleep(0.05)
        assert server.resets == [CANCEL]
        assert server.accepted == 1
        assert transport.stats()["streams_open"] == 0
        assert_clean(transport)


async def test_body_closed_early_resets_the_stream(server: ScriptedH2Server) -> None:
    """Closing a response before its end resets that stream and keeps the connection."""
    transport, client = h2_client(server)
    async with transport, client:
        async with client.stream("GET", "/hang") as response:
            async for chunk in response.aiter_raw():
                assert chunk
                break
        await asyncio.sleep(0.05)
        assert server.resets == [CANCEL]
        assert (await client.get("/")).status_code == 200
        assert server.accepted == 1
        assert transport.stats()["streams_open"] == 0
        assert_clean(transport)


async def test_a_slow_upload_is_not_cut_short_by_the_read_timeout(
    server: ScriptedH2Server,
) -> None:
    """The read timeout runs once the body is sent, as on HTTP/1.1: an upload the server
    takes slowly (its windows given back 0.1 s after each frame, about a second in all)
    is answered although the read timeout is 0.3 s."""
    transport, client = h2_client(server)
    async with transport, client:
        body = b"u" * 200_000  # three times the initial window
        timeout = httpx.Timeout(5, read=0.3)
        response = await client.post("/trickle?d=0.1", content=body, timeout=timeout)
        assert response.status_code == 200
        assert server.body_bytes == len(body)
        assert transport.stats()["errors"] == {}
        # and the read timeout still holds once the body is in
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/slow?d=2", content=b"job", timeout=timeout)
        assert_clean(transport)


async def test_a_stream_limit_that_never_frees_is_a_pool_timeout() -> None:
    """A request that waits for a stream of a connection whose server allows none fails
    with the engine's `PoolTimeout` after the pool timeout (httpx's `PoolTimeout` through
    the transport), not with a bare `TimeoutError`."""
    server = ScriptedH2Server(max_streams=0)
    await server.start()
    try:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
        conn = _http2.HTTP2Connection(stream, None)
        await conn.start(5)
        assert conn.max_streams == 0
        timeouts: dict[str, float | None] = {"read": 5, "write": 5, "pool": 0.2}
        started = asyncio.get_running_loop().time()
        with pytest.raises(PoolTimeout, match="pool timeout"):
            await conn.send(engine_request(httpx.Request("GET", server.url), timeouts))
        assert asyncio.get_running_loop().time() - started < 2
        await conn.aclose()
    finally:
        await server.aclose()


async def test_closing_a_response_ends_a_read_of_it_in_another_task(
    server: ScriptedH2Server,
) -> None:
    """A body read waiting in one task ends with `ReadError` when another task closes the
    response (no read timeout set: it would wait for ever otherwise)."""
    transport, client = h2_client(server, timeout=httpx.Timeout(5, read=None))
    async with transport, client:
        async with client.stream("GET", "/hang") as response:
            first = asyncio.Event()

            async def read() -> None:
                async for _ in response.aiter_raw():
                    first.set()

            reader = asyncio.create_task(read())
            await asyncio.wait_for(first.wait(), 2)
            await asyncio.sleep(0.05)  # the reader waits for more
            await response.aclose()
            with pytest.raises(httpx.ReadError, match="closed while it was being read"):
                await asyncio.wait_for(reader, 2)
        assert transport.stats()["streams_open"] == 0
        assert (await client.get("/")).status_code == 200
        assert_clean(transport)


async def test_read_timeout_fails_only_its_stream(server: ScriptedH2Server) -> None:
    """A stream that times out is reset; a sibling on the same connection is answered."""
    transport, client = h2_client(server)
    async with transport, client:
        slow = asyncio.create_task(client.get("/slow?d=2", timeout=httpx.Timeout(5, read=0.2)))
        fast = asyncio.create_task(client.get("/slow?d=0.3"))
        with pytest.raises(httpx.ReadTimeout):
            await slow
        assert (await fast).status_code == 200
        assert server.accepted == 1
        assert (await client.get("/")).status_code == 200
        assert transport.stats()["errors"] == {"ReadTimeout": 1}
        assert_clean(transport)


async def test_server_disconnect_fails_the_streams_and_the_pool_recovers(
    server: ScriptedH2Server,
) -> None:
    """A connection the server drops fails its in-flight POSTs (not re-sent: they may have
    run), and the next request opens a new connection."""
    transport, client = h2_client(server)
    async with transport, client:
        posts = [asyncio.create_task(client.post("/slow?d=1", content=b"x")) for _ in range(3)]
        await asyncio.sleep(0.1)
        server.drop_connections()
        results = await asyncio.gather(*posts, return_exceptions=True)
        assert all(isinstance(r, httpx.ReadError | httpx.RemoteProtocolError) for r in results)
        assert (await client.get("/")).status_code == 200
        assert server.accepted == 2
        assert_clean(transport)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_new_connection_dropped_under_concurrent_streams_is_not_retried(
    server: ScriptedH2Server, method: str
) -> None:
    """Streams sent together on a connection that had finished no request fail when it
    is dropped, with no retry even where one is allowed (GET, or POST with retry_post):
    other streams on a new connection do not make it a reused one that went stale."""
    transport, client = h2_client(server, retry_post=True)
    async with transport, client:
        sent = [
            asyncio.create_task(client.request(method, "/slow?d=1", content=b"x")) for _ in range(3)
        ]
        await asyncio.sleep(0.2)
        assert (server.accepted, len(server.heads)) == (1, 3)
        server.drop_connections()
        results = await asyncio.gather(*sent, return_exceptions=True)
        assert all(isinstance(r, httpx.ReadError | httpx.RemoteProtocolError) for r in results)
        assert transport.stats()["retries"] == 0
        assert len(server.heads) == 3  # none sent again
        assert_clean(transport)


async def test_a_connection_that_finished_a_request_is_reused_and_its_failure_retried(
    server: ScriptedH2Server,
) -> None:
    """The control: once a connection has finished a request, a POST with retry_post that
    dies on it before any response is sent once more, on a new connection."""
    transport, client = h2_client(server, retry_post=True)
    async with transport, client:
        assert (await client.get("/")).status_code == 200
        post = asyncio.create_task(client.post("/slow?d=0.5", content=b"x"))
        await asyncio.sleep(0.2)
        server.drop_connections()
        assert (await post).status_code == 200
        assert transport.stats()["retries"] == 1
        assert (server.accepted, len(server.heads)) == (2, 3)
        assert_clean(transport)


# -- the connection alone, on an in-memory wire that delivers one byte per read ------------


class ByteWire(httpcore.AsyncNetworkStream):
    """An in-memory network stream to an h2 server state machine; what the server sends
    arrives one byte per read, so every frame (GOAWAY included) comes in pieces."""

    def __init__(self) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.server = h2.connection.H2Connection(config=config)
        self.server.initiate_connection()
        self.incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self.requests: list[int] = []
        self.push(self.server.data_to_send())

    def push(self, data: bytes) -> None:
        """Deliver `data` to the client a byte at a time."""
        for i in range(len(data)):
            self.incoming.put_nowait(data[i : i + 1])

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """The next byte from the server."""
        return await self.incoming.get()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Feed the client's bytes to the server state machine."""
        for event in self.server.receive_data(buffer):
            if isinstance(event, h2.events.RequestReceived):
                self.requests.append(event.stream_id)
        self.push(self.server.data_to_send())

    def answer(self, stream_id: int, body: bytes) -> None:
        """Send a 200 with `body` on `stream_id`."""
        self.server.send_headers(stream_id, [(b":status", b"200")])
        self.server.send_data(stream_id, body, end_stream=True)
        self.push(self.server.data_to_send())

    async def aclose(self) -> None:
        """End the stream."""
        self.incoming.put_nowait(b"")

    def get_extra_info(self, info: str) -> Any:
        """Nothing to tell."""
        return None


async def test_goaway_in_pieces_is_found_and_honoured() -> None:
    """A GOAWAY that arrives a byte at a time, amid DATA frames, fails only the stream above
    its last stream id (as not processed) and stops new streams; the others complete."""
    wire = ByteWire()
    conn = _http2.HTTP2Connection(wire, None)
    await conn.start(5)
    assert conn.max_streams is not None
    timeouts: dict[str, float | None] = {"read": 5, "write": 5, "pool": 5}
    sends = [
        asyncio.create_task(
            conn.send(engine_request(httpx.Request("GET", f"http://h/{i}"), timeouts))
        )
        for i in range(3)
    ]
    while len(wire.requests) < 3:
        await asyncio.sleep(0.001)
    assert wire.requests == [1, 3, 5]
    wire.answer(1, b"one" * 700)
    wire.push(GoAwayFrame(0, last_stream_id=3).serialize())
    wire.answer(3, b"three")
    first, second = await sends[0], await sends[1]
    with pytest.raises(StreamNotProcessed, match="not processed"):
        await sends[2]
    assert [b"".join([c async for c in r[2]]) for r in (first, second)] == [b"one" * 700, b"three"]
    assert not conn.is_available()
    with pytest.raises(ConnectionNotAvailable):
        await conn.send(engine_request(httpx.Request("GET", "http://h/late"), timeouts))
    await conn.aclose()
    assert conn.is_closed()


async def test_server_that_closes_before_its_settings_is_a_connect_error() -> None:
    """A server that accepts and closes without its SETTINGS fails the connect, clearly."""

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    listener = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with (
            PoolTransport(http1=False, http2=True) as transport,
            httpx.AsyncClient(transport=transport) as client,
        ):
            with pytest.raises(httpx.ConnectError, match="before the server's SETTINGS"):
                await client.get(f"http://127.0.0.1:{port}/")
            assert_clean(transport)
    finally:
        listener.close()
        await listener.wait_closed()
