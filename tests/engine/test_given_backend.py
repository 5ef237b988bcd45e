"""A network backend given from outside (`network_backend=`): its library's exceptions
become the engine's of the same name where they leave it, whatever the step, and
reach an httpx caller as httpx's."""

from __future__ import annotations

import ssl
from typing import Any

import httpcore
import httpx
import pytest

from httpool._engine import _errors
from httpool._engine._network import GivenBackend
from httpool._engine._transport import PoolTransport

pytestmark = pytest.mark.anyio


class FailingStream(httpcore.AsyncNetworkStream):
    """A stream whose every step raises the exception it is given."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        raise self.exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        raise self.exc

    async def aclose(self) -> None:
        raise self.exc

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise self.exc

    def get_extra_info(self, info: str) -> Any:
        return f"info {info}" if info == "peer" else None


class Backend(httpcore.AsyncNetworkBackend):
    """Connects to a `FailingStream`, or fails to connect with `connect_error`."""

    def __init__(self, exc: Exception, connect_error: Exception | None = None) -> None:
        self.exc, self.connect_error = exc, connect_error

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> FailingStream:
        if self.connect_error is not None:
            raise self.connect_error
        return FailingStream(self.exc)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> FailingStream:
        if self.connect_error is not None:
            raise self.connect_error
        return FailingStream(self.exc)

    async def sleep(self, seconds: float) -> None:
        pass


async def test_each_step_raises_the_engines_exception_of_the_same_name() -> None:
    given = GivenBackend(Backend(httpcore.ReadTimeout("slow")))
    stream = await given.connect_tcp("127.0.0.1", 1)
    with pytest.raises(_errors.ReadTimeout, match="slow"):
        await stream.read(10)
    with pytest.raises(_errors.ReadTimeout):
        await stream.write(b"x")
    with pytest.raises(_errors.ReadTimeout):
        await stream.aclose()
    with pytest.raises(_errors.ReadTimeout):
        await stream.start_tls(ssl.create_default_context(), "example.com")
    assert stream.get_extra_info("peer") == "info peer"
    unix = await given.connect_unix_socket("/nowhere")
    with pytest.raises(_errors.ReadTimeout):
        await unix.read(10)
    await given.sleep(0)


async def test_a_failed_connect_and_an_unknown_error() -> None:
    refused = GivenBackend(Backend(ValueError("unused"), httpcore.ConnectError("refused")))
    with pytest.raises(_errors.ConnectError, match="refused"):
        await refused.connect_tcp("127.0.0.1", 1)
    with pytest.raises(_errors.ConnectError):
        await refused.connect_unix_socket("/nowhere")
    # an error of no engine name passes unchanged; an engine error too
    odd = await GivenBackend(Backend(ValueError("odd"))).connect_tcp("127.0.0.1", 1)
    with pytest.raises(ValueError, match="odd"):
        await odd.read(1)
    own = await GivenBackend(Backend(_errors.WriteError("own"))).connect_tcp("127.0.0.1", 1)
    with pytest.raises(_errors.WriteError, match="own"):
        await own.write(b"x")


async def test_an_httpx_caller_gets_httpx_exceptions() -> None:
    transport = PoolTransport(network_backend=Backend(httpcore.ReadError("reset")))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ReadError, match="reset"):  # the name it had in httpcore
            await client.get("http://127.0.0.1:1/")
    refused = PoolTransport(network_backend=Backend(ValueError(), httpcore.ConnectError("no")))
    async with httpx.AsyncClient(transport=refused) as client:
        with pytest.raises(httpx.ConnectError, match="no"):
            await client.get("http://127.0.0.1:1/")
