"""A provider's clients, of every kind, over one shared engine.

`ProviderClients` holds what one provider's clients share (its `Gate` and its engine,
the transport its spec names) and makes each kind of client once, on request:
`httpx.AsyncClient` (the default), `httpx2.AsyncClient`, and the sync `httpx.Client` /
`httpx2.Client` for `def` routes.
"""

from __future__ import annotations

import importlib
from typing import Any

import httpx

from .._config import Provider
from .._errors import ConfigError
from .._policy import PolicyTransport, has_policy, wrap_policy
from ._gate import TAG, Gate, OpenStreams, open_streams
from ._httpx import build_async_client, build_sync_client, make_transport

__all__ = [
    "TAG",
    "Gate",
    "OpenStreams",
    "ProviderClients",
    "build_sync_client",
    "kind_label",
    "make_transport",
    "open_streams",
    "require_httpx2",
]

MISSING_HTTPX2 = "httpx2 clients need the httpx2 package: pip install 'httpool[httpx2]'"


def require_httpx2(where: str) -> Any:
    """The `httpx2` module, or an `ImportError` that names the extra to install."""
    try:
        return importlib.import_module("httpx2")
    except ImportError:
        msg = f"{where}: {MISSING_HTTPX2}"
        raise ImportError(msg, name="httpx2") from None


def kind_label(kind: object) -> str:
    """`httpx.AsyncClient`, `httpx2.Client`...: how messages name a kind of client."""
    if isinstance(kind, type):
        return f"{kind.__module__.split('.')[0]}.{kind.__name__}"
    return repr(kind)


def _spec_is_httpx2(spec: object) -> bool:
    module = type(spec).__module__.split(".")[0]
    return module in ("httpx2", "httpcore2")


class ProviderClients:
    """One provider's gate, engine and clients (each kind made once, when asked for)."""

    __slots__ = ("base", "clients", "gate", "provider")

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.gate = Gate(provider)
        self.gate.owned = True
        self.clients: dict[type, Any] = {}
        spec = provider.transport
        if callable(spec) and not isinstance(spec, str | httpx.AsyncBaseTransport):
            spec = spec()  # a factory: one transport per app run, shared by the kinds
        self.base: Any = None  # the engine, made on first use
        if _spec_is_httpx2(spec):
            if has_policy(provider):
                msg = (
                    f"Provider({provider.name!r}): retry, max_concurrency, rate_limit and "
                    "breaker need an httpx transport or httpool's engine, not an httpx2 one"
                )
                raise ConfigError(msg)
            self.base = spec
        elif isinstance(spec, httpx.AsyncBaseTransport):
            self.base = wrap_policy(provider, spec)

    @property
    def default_kind(self) -> type:
        """The kind made when the pool opens: httpx's, or httpx2's for an httpx2 transport."""
        if _spec_is_httpx2(self.base):
            return require_httpx2(f"Provider({self.provider.name!r})").AsyncClient  # type: ignore[no-any-return]
        return httpx.AsyncClient

    @property
    def engine(self) -> Any:
        """The transport every kind sends through (the provider's policy around the
        transport its spec names), made on first use."""
        if self.base is None:  # the policy (retries, limits) wraps it for every kind
            self.base = wrap_policy(self.provider, make_transport(self.provider))
        return self.base

    def get(self, kind: type) -> Any:
        """The client of `kind`, made now if there is none."""
        client = self.clients.get(kind)
        if client is None:
            client = self.clients[kind] = self._make(kind)
        return client

    def _make(self, kind: type) -> Any:
        provider = self.provider
        if kind is httpx.AsyncClient:
            engine = self.engine
            if not isinstance(engine, httpx.AsyncBaseTransport):
                msg = (
                    f"Provider({provider.name!r}) has an httpx2 transport; ask for its "
                    "httpx2.AsyncClient (pool.client(name, httpx2.AsyncClient))"
                )
                raise ConfigError(msg)
            return build_async_client(provider, self.gate, engine)
        if kind is httpx.Client:
            return build_sync_client(provider, self.gate, self._policy())
        httpx2 = require_httpx2(f"a {kind_label(kind)} for provider {provider.name!r}")
        from . import _httpx2

        if kind is httpx2.AsyncClient:
            transport = _httpx2.httpx2_transport(provider, self.engine)
            return _httpx2.build_async_client2(provider, self.gate, transport)
        if kind is httpx2.Client:
            return _httpx2.build_sync_client2(provider, self.gate, self._policy())
        msg = (
            f"unknown kind of client {kind_label(kind)} for provider {provider.name!r}; use "
            "httpx.AsyncClient, httpx2.AsyncClient, httpx.Client or httpx2.Client"
        )
        raise TypeError(msg)

    def _policy(self) -> PolicyTransport | None:
        """The provider's policy state, which its sync clients share, or `None`."""
        if not has_policy(self.provider):
            return None
        engine = self.engine
        return engine if isinstance(engine, PolicyTransport) else None

    def is_async(self, client: object) -> bool:
        """Whether `client` is one of the async kinds."""
        return hasattr(client, "aclose")
