"""The engine's exceptions: one tree of its own, with httpx's names.

The engine raises these and nothing of a client library; each adapter maps them by
name to its library's exceptions (`PoolTransport` to httpx's, `Httpx2PoolTransport` to
httpx2's), walking the class's bases so that `StreamNotProcessed` becomes a
`RemoteProtocolError`.

A network backend given from outside (an httpcore backend, for tests) raises its own
library's exceptions; `_network.GivenBackend` turns them into these where they leave it.
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "ConnectionNotAvailable",
    "EngineError",
    "LocalProtocolError",
    "NetworkError",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "StreamNotProcessed",
    "TimeoutException",
    "UnsupportedProtocol",
    "WriteError",
    "WriteTimeout",
    "kind_name",
]


class EngineError(Exception):
    """Any failure of a request in the engine (httpx's `TransportError`)."""


class TimeoutException(EngineError):  # noqa: N818 (the name httpx and httpcore give it)
    """A timeout: connecting, reading, writing, or waiting for a connection."""


class ConnectTimeout(TimeoutException):
    """Connecting (TCP, TLS, a proxy's tunnel, HTTP/2's SETTINGS) took too long."""


class ReadTimeout(TimeoutException):
    """No bytes arrived in time."""


class WriteTimeout(TimeoutException):
    """Bytes could not be written in time."""


class PoolTimeout(TimeoutException):
    """No connection was free in time."""


class NetworkError(EngineError):
    """The network failed."""


class ConnectError(NetworkError):
    """The connection could not be opened."""


class ReadError(NetworkError):
    """Reading failed (the connection broke)."""


class WriteError(NetworkError):
    """Writing failed (the connection broke)."""


class ProtocolError(EngineError):
    """The HTTP rules were broken."""


class LocalProtocolError(ProtocolError):
    """The request breaks the HTTP rules (nothing more of it is sent)."""


class RemoteProtocolError(ProtocolError):
    """The server broke the HTTP rules or the connection mid-exchange."""


class ProxyError(EngineError):
    """The proxy refused or broke the connection."""


class UnsupportedProtocol(EngineError):  # noqa: N818 (the name httpx and httpcore give it)
    """The URL's scheme is not http or https."""


class StreamNotProcessed(RemoteProtocolError):  # noqa: N818 (the name httpx and httpcore give it)
    """The server did not process the request: the stream was above a GOAWAY's last
    stream id (`goaway` is True), or was refused with `REFUSED_STREAM` (RFC 9113 §8.7).
    Sending it again on another connection is safe whatever the method."""

    def __init__(self, message: str, *, goaway: bool) -> None:
        super().__init__(message)
        self.goaway = goaway


class ConnectionNotAvailable(EngineError):  # noqa: N818 (the name httpx and httpcore give it)
    """An internal signal: the connection takes no new request (nothing was sent on it);
    the engine tries another one."""


_SIGNALS = (EngineError, StreamNotProcessed, ConnectionNotAvailable)


def kind_name(exc: BaseException) -> str | None:
    """The name `exc` is counted by: that of its nearest class among this module's
    kinds (httpx's names; `StreamNotProcessed` is a `RemoteProtocolError`), or `None`
    for an error of no such kind."""
    for cls in type(exc).__mro__:
        if cls.__module__ == __name__ and cls not in _SIGNALS:
            return cls.__name__
    return None
