"""What the engine needs of a network: a backend that connects, and the streams it gives.

The methods are httpcore's, so an httpcore network backend (`network_backend=`, for
tests) fits; the engine's own is `_asyncio_backend.AsyncioBackend`. A backend given from
outside is wrapped in `GivenBackend`, which turns the exceptions of its own library
into the engine's of the same names where they leave it, so the engine only ever
catches its own.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any, Protocol

from . import _errors

__all__ = ["GivenBackend", "NetworkBackend", "NetworkStream"]


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


def _engine_error(exc: Exception) -> Exception:
    """The engine's exception of the same name as `exc` or its nearest base (httpcore's
    and httpcore2's are named as the engine's), or `exc` itself."""
    if isinstance(exc, _errors.EngineError):
        return exc
    for cls in type(exc).__mro__:
        kind = getattr(_errors, cls.__name__, None)
        if isinstance(kind, type) and issubclass(kind, _errors.EngineError):
            translated: Exception = kind(str(exc))
            return translated
    return exc


class _EngineErrors:
    """`with ENGINE_ERRORS:` turns a foreign exception raised in its block into the
    engine's of the same name (`_engine_error`), chained to it; others pass as they are."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Exception):
            translated = _engine_error(exc)
            if translated is not exc:
                raise translated from exc


ENGINE_ERRORS = _EngineErrors()


class _GivenStream:
    """A stream of a given backend, raising the engine's exceptions."""

    __slots__ = ("_stream",)

    def __init__(self, stream: NetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        with ENGINE_ERRORS:
            return await self._stream.read(max_bytes, timeout=timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        with ENGINE_ERRORS:
            await self._stream.write(buffer, timeout=timeout)

    async def aclose(self) -> None:
        with ENGINE_ERRORS:
            await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> NetworkStream:
        with ENGINE_ERRORS:
            stream = await self._stream.start_tls(
                ssl_context, server_hostname=server_hostname, timeout=timeout
            )
        return _GivenStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class GivenBackend:
    """A network backend given from outside (`network_backend=`), raising the engine's
    exceptions."""

    __slots__ = ("_backend",)

    def __init__(self, backend: NetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> NetworkStream:
        with ENGINE_ERRORS:
            stream = await self._backend.connect_tcp(
                host,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )
        return _GivenStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> NetworkStream:
        with ENGINE_ERRORS:
            stream = await self._backend.connect_unix_socket(
                path, timeout=timeout, socket_options=socket_options
            )
        return _GivenStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)
