"""A proxy that misbehaves during CONNECT: each failure is a clear httpx error naming the
proxy and the target, and leaves nothing in use.

The proxy is a raw asyncio server on the test's loop that reads the CONNECT request and
answers with the bytes a test gives it (or nothing, then closes or hangs).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from httpool._engine._transport import PoolTransport

from .conftest import assert_idle

pytestmark = pytest.mark.anyio

TARGET = "https://api.example.test/v1"


class ScriptedProxy:
    """Answers every CONNECT with `answer`; `None` holds the connection open, silent."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.connects: list[bytes] = []
        self.url = ""
        self._held: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.transport.abort()
            return
        self.connects.append(head.split(b"\r\n", 1)[0])
        if self.answer is None:
            self._held.append(writer)
            return
        writer.write(self.answer)
        await writer.drain()
        writer.close()

    def abort_all(self) -> None:
        for writer in self._held:
            writer.transport.abort()


@pytest.fixture
async def scripted_proxy() -> AsyncIterator[ScriptedProxy]:
    """A proxy whose answer to CONNECT the test sets (`scripted_proxy.answer = ...`)."""
    proxy = ScriptedProxy(None)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield proxy
    proxy.abort_all()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n", "refused the tunnel to"),
        (
            b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n",
            "check the proxy's credentials",
        ),
        (b"HTTP/1.1 200 OK\r\n\r\nhello from the proxy", "sent bytes of its own"),
        (b"", "broke the CONNECT api.example.test:443 exchange"),  # closed, no answer
        (b"NOT HTTP AT ALL\r\n\r\n", "broke the CONNECT api.example.test:443 exchange"),
    ],
)
async def test_a_bad_connect_answer_is_a_proxy_error(
    scripted_proxy: ScriptedProxy, answer: bytes, said: str
) -> None:
    """Refused, refused for credentials, extra bytes, closed, or not HTTP: a ProxyError
    that names the proxy and what went wrong."""
    scripted_proxy.answer = answer
    transport = PoolTransport(proxy=scripted_proxy.url)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ProxyError, match=said) as info:
            await client.get(TARGET)
        assert scripted_proxy.url.removeprefix("http://") in str(info.value)
        assert_idle(transport)
    assert scripted_proxy.connects == [b"CONNECT api.example.test:443 HTTP/1.1"]


async def test_a_proxy_that_never_answers_connect_times_out(
    scripted_proxy: ScriptedProxy,
) -> None:
    """A proxy silent after CONNECT fails within the connect timeout, as ConnectTimeout."""
    transport = PoolTransport(proxy=scripted_proxy.url)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(0.3)) as client:
        with pytest.raises(httpx.ConnectTimeout, match="did not answer CONNECT"):
            await client.get(TARGET)
        assert_idle(transport)
