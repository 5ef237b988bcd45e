"""The public names of httpool."""

from __future__ import annotations

import httpool

PUBLIC = {
    "Breaker",
    "CircuitOpenError",
    "LimitTimeout",
    "RateLimit",
    "Retry",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "ClientPool",
    "ConfigError",
    "OriginNotAllowedError",
    "PoolClosedError",
    "PoolCollector",
    "PoolState",
    "PoolTransport",
    "Provider",
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
}


def test_all_is_sorted_and_exact() -> None:
    """`__all__` lists exactly the public names, sorted, and each one exists."""
    assert httpool.__all__ == sorted(httpool.__all__)
    assert set(httpool.__all__) == PUBLIC
    for name in httpool.__all__:
        assert getattr(httpool, name) is not None


def test_design_names_exist() -> None:
    """Every name of the design's API table is there with the documented kind."""
    assert issubclass(httpool.ConfigError, ValueError)
    assert issubclass(httpool.UnknownProviderError, LookupError)
    assert issubclass(httpool.PoolClosedError, RuntimeError)
    for method in (
        "client",
        "get_client",
        "get_client_sync",
        "sync_client",
        "has_client",
        "close_client",
        "close_all",
        "aclose",
        "stats",
    ):
        assert callable(getattr(httpool.ClientPool, method))
    assert isinstance(httpool.ClientPool.names, property)


def test_version() -> None:
    """`__version__` comes from the installed package's metadata."""
    assert httpool.__version__.startswith("0.")
