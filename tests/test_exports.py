"""The public names of httpool."""

from __future__ import annotations

from types import ModuleType

import httpool


def _public_names() -> set[str]:
    """The names the package itself defines as public: not private, not a submodule."""
    return {
        name
        for name, value in vars(httpool).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }


def test_all_is_sorted_and_exact() -> None:
    """`__all__` lists exactly the public names, sorted, and each one exists."""
    assert httpool.__all__ == sorted(httpool.__all__)
    assert set(httpool.__all__) == _public_names()
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


def test_the_httpx2_twin_is_there_on_demand() -> None:
    """`httpool.Httpx2PoolTransport` is the engine's httpx2 adapter (not in `__all__`:
    it needs the httpx2 extra)."""
    import httpx2

    transport = httpool.Httpx2PoolTransport()
    assert isinstance(transport.engine, httpool.PoolTransport)
    assert isinstance(transport, httpx2.AsyncBaseTransport)
    assert "Httpx2PoolTransport" not in httpool.__all__
