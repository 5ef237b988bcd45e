"""httpool: named, long-lived httpx clients for FastAPI and Starlette apps."""

from ._budget import per_worker
from ._config import DEFAULT_LIMITS, DEFAULT_TIMEOUT, Provider, limits, timeout
from ._depends import client, sync_client
from ._errors import ConfigError, OriginNotAllowedError, PoolClosedError, UnknownProviderError
from ._handlers import install_error_handlers
from ._lifespan import get_pool, lifespan
from ._metrics import PoolCollector
from ._policy import Breaker, CircuitOpenError, LimitTimeout, RateLimit, Retry
from ._pool import ClientPool, PoolState
from ._router import router
from ._secret import Secret
from ._settings import providers_from_env
from ._streaming import UpstreamStreamingResponse, proxy_stream
from ._transport import PoolTransport

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


def __getattr__(name: str) -> str:
    """`httpool.__version__`, read from the installed package's metadata when asked."""
    if name == "__version__":
        from importlib.metadata import version

        return version("httpool")
    msg = f"module 'httpool' has no attribute {name!r}"
    raise AttributeError(msg)
