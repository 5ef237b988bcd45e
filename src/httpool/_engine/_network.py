"""What the engine needs of a network: a backend that connects, and the streams it gives.

The methods are httpcore's, so an httpcore network backend (`network_backend=`, for
tests) fits as it is; the engine's own is `_asyncio_backend.AsyncioBackend`. The
exceptions such a backend raises are the engine's or, once adopted (`_errors.adopt`),
those of the same names of its own library.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["NetworkBackend", "NetworkStream"]


class NetworkStream(Protocol):
    """A connected byte stream (TCP, TLS, a tunnel)."""

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes: ...  # noqa: ASYNC109
    async def write(self, buffer: bytes, timeout: float | None = None) -> None: ...  # noqa: ASYNC109
    async def aclose(self) -> None: ...

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> NetworkStream: ...

    def get_extra_info(self, info: str) -> Any: ...


class NetworkBackend(Protocol):
    """Opens network streams."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> NetworkStream: ...

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> NetworkStream: ...

    async def sleep(self, seconds: float) -> None: ...
