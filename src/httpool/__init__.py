"""httpool: named, long-lived httpx and httpx2 clients for FastAPI and Starlette apps."""

import typing as _typing

from ._asgi._dependencies import client, sync_client
from ._asgi._handlers import install_error_handlers
from ._asgi._lifespan import lifespan
from ._asgi._state import get_pool
from ._asgi._streaming import UpstreamStreamingResponse, proxy_stream
from ._budget import per_worker
from ._config import DEFAULT_LIMITS, DEFAULT_TIMEOUT, Provider, limits, timeout
from ._engine._transport import PoolTransport
from ._errors import ConfigError, OriginNotAllowedError, PoolClosedError, UnknownProviderError
from ._ops._metrics import PoolCollector
from ._ops._router import router
from ._policy import Breaker, CircuitOpenError, LimitTimeout, RateLimit, Retry
from ._pool import ClientPool, PoolState
from ._secret import Secret
from ._settings import providers_from_env

__all__ = [
    "Breaker",
    "CircuitOpenError",
    "ClientPool",
    "ConfigError",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "LimitTimeout",
    "OriginNotAllowedError",
    "PoolClosedError",
    "PoolCollector",
    "PoolState",
    "PoolTransport",
    "Provider",
    "RateLimit",
    "Retry",
    "Secret",
    "UnknownProviderError",
    "UpstreamStreamingResponse",
    "client",
    "get_pool",
    "install_error_handlers",
    "lifespan",
    "limits",
    "per_worker",
    "providers_from_env",
    "proxy_stream",
    "router",
    "sync_client",
    "timeout",
]


if _typing.TYPE_CHECKING:
    __version__: str


def __getattr__(name: str) -> _typing.Any:
    """`httpool.__version__`, read from the installed package's metadata when asked, and
    `httpool.Httpx2PoolTransport`, the engine as an httpx2 transport (`httpool[httpx2]`)."""
    if name == "__version__":
        from importlib.metadata import version

        return version("httpool")
    if name == "Httpx2PoolTransport":
        from ._clients import require_httpx2

        require_httpx2("httpool.Httpx2PoolTransport")
        from ._engine._httpx2 import Httpx2PoolTransport

        return Httpx2PoolTransport
    msg = f"module 'httpool' has no attribute {name!r}"
    raise AttributeError(msg)
