"""A provider's httpx clients: the transport wrapper, the pooled clients, the transports."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

import httpx

from .._config import Provider, as_httpx_limits
from .._policy import PolicyTransport, SyncPolicyTransport
from .._secret import Secret
from ._gate import Gate
from ._guards import (
    AsyncClientGuards,
    CountedBody,
    GateTransport,
    SyncClientGuards,
    SyncCountedBody,
    SyncGateTransport,
)
from ._speedups import CookiesOnlyWhenSet, RememberedURLs

__all__ = [
    "PooledAsyncClient",
    "PooledClient",
    "ProviderTransport",
    "SyncProviderTransport",
    "build_async_client",
    "build_sync_client",
    "make_transport",
    "verify_option",
]

logger = logging.getLogger("httpool")
_warned_unverified: set[str] = set()
_said_trio: set[str] = set()


class _CountedStream(CountedBody, httpx.AsyncByteStream):
    """A httpx response body that tells its provider's gate when it is closed."""


class ProviderTransport(GateTransport, httpx.AsyncBaseTransport):
    """The provider's transport wrapper for httpx clients (see `GateTransport`)."""

    counted = _CountedStream


class _SyncCountedStream(SyncCountedBody, httpx.SyncByteStream):
    """A httpx sync response body that tells its provider's gate when it is closed."""


class SyncProviderTransport(SyncGateTransport, httpx.BaseTransport):
    """The sync twin (see `SyncGateTransport`)."""

    counted = _SyncCountedStream


class PooledAsyncClient(AsyncClientGuards, RememberedURLs, CookiesOnlyWhenSet, httpx.AsyncClient):
    """An `httpx.AsyncClient` owned by a pool: closing it from outside is ignored
    (logged once) while its pool is open, so an SDK's `close()` leaves it working."""

    def __init__(self, gate: Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate


class PooledClient(SyncClientGuards, httpx.Client):
    """The thread-safe `httpx.Client` of a provider, for `def` routes."""

    def __init__(self, gate: Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate


def _auth(provider: Provider) -> Any:
    """The provider's auth for a client: an `Auth` object as given, or a plain pair."""
    auth = provider.auth
    if isinstance(auth, tuple):
        user, password = (v.get_secret_value() if isinstance(v, Secret) else v for v in auth)
        return (user, password)
    return auth


def _common(provider: Provider) -> dict[str, Any]:
    if provider.verify is False and provider.name not in _warned_unverified:
        _warned_unverified.add(provider.name)
        logger.warning(
            "TLS verification is off for provider %r (verify=False): its traffic can be "
            "read and changed by anyone on the path",
            provider.name,
            extra={"provider": provider.name},
        )
    return {
        "base_url": provider.base_url,
        "headers": provider.plain_headers(),
        "auth": _auth(provider),
        "timeout": provider.timeout,
        "follow_redirects": provider.follow_redirects,
        "trust_env": provider.trust_env,
    }


def _running_trio() -> bool:
    """Whether this code runs under trio (httpool's own transport runs on asyncio only).

    Made in a plain thread (no event loop), a client keeps httpool's transport: it binds
    to the asyncio loop that first uses it.
    """
    trio = sys.modules.get("trio")
    if trio is None:  # not imported: not running
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return False  # asyncio (trio-asyncio's loop included)
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def _say_trio_fallback(provider: Provider) -> None:
    """Log once per provider that it runs on httpx's own transport under trio."""
    if provider.name in _said_trio:
        return
    _said_trio.add(provider.name)
    lost = [f for f in ("max_lifetime", "retry_post") if getattr(provider, f)]
    message = (
        "provider %r runs under trio: it uses httpx's own transport, as httpool's "
        "transport runs on asyncio only (transport='httpx' chooses it without this note)"
    )
    if lost:
        message += "; %s not applied there" % " and ".join(lost)  # noqa: UP031
        logger.warning(message, provider.name, extra={"provider": provider.name})
    else:
        logger.info(message, provider.name, extra={"provider": provider.name})


def make_transport(provider: Provider) -> httpx.AsyncBaseTransport:
    """The async transport that `provider.transport` names or gives.

    Under trio, `"httpool"` (the default) becomes httpx's own transport, logged once.
    """
    spec = provider.transport
    if isinstance(spec, httpx.AsyncBaseTransport):
        return spec
    if callable(spec) and not isinstance(spec, str):
        made = spec()
        if not isinstance(made, httpx.AsyncBaseTransport):
            msg = f"Provider({provider.name!r}).transport made {made!r}, not an httpx transport"
            raise TypeError(msg)
        return made
    if not isinstance(spec, str):
        msg = f"Provider({provider.name!r}).transport is not an httpx transport: {spec!r}"
        raise TypeError(msg)
    from .._engine._proxy_transports import check_support, routed

    where = f"Provider({provider.name!r})"
    routes = _routes(provider, where)
    options: dict[str, Any] = {
        "verify": provider.verify,
        "http2": provider.http2,
        "limits": provider.limits,
        "trust_env": provider.trust_env,
    }
    if spec == "httpx" or (spec == "httpool" and _running_trio()):
        if spec == "httpool":
            _say_trio_fallback(provider)
        check_support(routes, "httpx", where)
        options["verify"] = verify_option(provider)
        return routed(routes, lambda p: httpx.AsyncHTTPTransport(**options, proxy=_httpx(p)))
    if spec == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        check_support(routes, "aiohttp", where)
        options["verify"] = verify_option(provider)
        # aiohttp speaks HTTP/1.1 only; asked for HTTP/2 (httpool's default), it logs a
        # warning on the root logger for every client. `http2` means "offer it": no offer.
        options["http2"] = False
        return routed(
            routes,
            lambda p: AiohttpTransport(**options, proxy=_httpx(p, auth_header=True)),
            auth_on_plain=True,
        )
    from .._engine._transport import PoolTransport

    check_support(routes, "httpool", where)
    pool_transport: httpx.AsyncBaseTransport = PoolTransport(
        **options,
        max_lifetime=provider.max_lifetime,
        retry_post=provider.retry_post,
        proxy=routes,
        dns_ttl=provider.dns_ttl,
    )
    return pool_transport


def _routes(provider: Provider, where: str) -> Any:
    """The provider's proxy routes (its own proxy, else the environment's), or None."""
    from .._engine._proxy_config import build_routes
    from .._errors import ConfigError

    try:
        return build_routes(provider.proxy, provider.trust_env)
    except (TypeError, ValueError) as exc:  # a bad proxy in the environment
        msg = f"{where}: the proxy from the environment is unusable: {exc}"
        raise ConfigError(msg) from None


def verify_option(provider: Provider) -> Any:
    """`verify` for httpx's and aiohttp's transports: `"system"` becomes a truststore
    context, a CA path a context of its own (httpx deprecates paths).

    httpool's own transport takes both as they are and offers its ALPN protocols.
    """
    if isinstance(provider.verify, str):
        from .._engine._truststore import path_context, system_context

        return system_context() if provider.verify == "system" else path_context(provider.verify)
    return provider.verify


def _httpx(proxy: Any, auth_header: bool = False) -> httpx.Proxy | None:
    from .._engine._proxy_config import as_httpx

    return None if proxy is None else as_httpx(proxy, auth_header=auth_header)


def common_options(provider: Provider) -> dict[str, Any]:
    """The client options every library takes alike, from `provider`."""
    return _common(provider)


def build_async_client(
    provider: Provider, gate: Gate, transport: httpx.AsyncBaseTransport
) -> PooledAsyncClient:
    """A new `httpx.AsyncClient` for `provider`, sending through `transport`."""
    wrapped = ProviderTransport(transport, gate)
    return PooledAsyncClient(gate, transport=wrapped, **async_options(provider, _common))


def async_options(
    provider: Provider, options: Callable[[Provider], dict[str, Any]]
) -> dict[str, Any]:
    """An async client's options: the library's `options(provider)` and the event hooks
    (copied: a client's hooks can be changed without touching the provider's)."""
    hooks = {kind: list(funcs) for kind, funcs in (provider.event_hooks or {}).items()}
    return {**options(provider), "event_hooks": hooks}


def build_sync_client(
    provider: Provider, gate: Gate | None = None, policy: PolicyTransport | None = None
) -> PooledClient:
    """A new thread-safe `httpx.Client` for `provider` (httpx's own sync transport),
    under the provider's `policy` (its async clients' state) when it has one."""
    from .._engine._proxy_transports import check_support, routed_sync

    where = f"Provider({provider.name!r})"
    routes = _routes(provider, where)
    check_support(routes, "sync", where)
    transport = routed_sync(
        routes,
        lambda p: httpx.HTTPTransport(
            verify=verify_option(provider),
            http2=provider.http2,
            limits=as_httpx_limits(provider.limits),
            trust_env=provider.trust_env,
            proxy=_httpx(p),
        ),
    )
    if policy is not None:
        transport = SyncPolicyTransport(transport, policy)
    gate = gate or Gate(provider)
    return PooledClient(gate, transport=SyncProviderTransport(transport, gate), **_common(provider))
