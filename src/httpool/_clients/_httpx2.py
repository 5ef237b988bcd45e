"""A provider's httpx2 clients: the twins of `_httpx`'s, on the same gate and engine.

This module imports httpx2 (`httpool[httpx2]`); the pool imports it only when an httpx2
client is asked for.
"""

from __future__ import annotations

from typing import Any

import httpx
import httpx2

from .._config import Provider
from .._engine._httpx2 import Httpx2PoolTransport, _mapped
from .._errors import ConfigError
from .._policy import PolicyTransport, SyncPolicyTransport, has_policy
from ._gate import Gate
from ._guards import (
    AsyncClientGuards,
    CountedBody,
    GateTransport,
    SyncClientGuards,
    SyncCountedBody,
    SyncGateTransport,
)
from ._httpx import async_options, common_options, verify_option
from ._speedups import RememberedURLs

__all__ = [
    "Httpx2ProviderTransport",
    "PooledAsyncClient2",
    "PooledClient2",
    "build_async_client2",
    "build_sync_client2",
    "httpx2_transport",
]


class _CountedStream(CountedBody, httpx2.AsyncByteStream):
    """A httpx2 response body that tells its provider's gate when it is closed."""


class Httpx2ProviderTransport(GateTransport, httpx2.AsyncBaseTransport):
    """The provider's transport wrapper for httpx2 clients (see `GateTransport`)."""

    counted = _CountedStream


class _SyncCountedStream(SyncCountedBody, httpx2.SyncByteStream):
    """A httpx2 sync response body that tells its provider's gate when it is closed."""


class _SyncProviderTransport(SyncGateTransport, httpx2.BaseTransport):
    """The sync twin (see `SyncGateTransport`)."""

    counted = _SyncCountedStream


class PooledAsyncClient2(AsyncClientGuards, RememberedURLs, httpx2.AsyncClient):
    """An `httpx2.AsyncClient` owned by a pool (see `PooledAsyncClient`); httpx2 skips
    the cookie parsing of responses that set none by itself."""

    label = "httpx2 client"

    def __init__(self, gate: Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate


class PooledClient2(SyncClientGuards, httpx2.Client):
    """The thread-safe `httpx2.Client` of a provider, for `def` routes."""

    label = "httpx2 sync client"

    def __init__(self, gate: Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate


def _options(provider: Provider) -> dict[str, Any]:
    """The client options in httpx2's types (`Timeout`, auth)."""
    options = common_options(provider)
    t = provider.timeout
    options["timeout"] = httpx2.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)
    auth = options["auth"]
    if isinstance(auth, httpx.Auth):
        msg = (
            f"Provider({provider.name!r}).auth is an httpx.Auth, which httpx2 clients cannot "
            "run; give an httpx2.Auth, or a (user, password) pair that both libraries take"
        )
        raise ConfigError(msg)
    return options


def _limits(provider: Provider) -> httpx2.Limits:
    lim = provider.limits
    return httpx2.Limits(
        max_connections=lim.max_connections,
        max_keepalive_connections=lim.max_keepalive_connections,
        keepalive_expiry=lim.keepalive_expiry,
    )


def _policy_view(request: httpx2.Request) -> tuple[httpx.Request, bool]:
    """An httpx2 request as the provider's policy reads it (no body), and whether its
    body can be sent again."""
    view = httpx.Request(
        request.method,
        str(request.url),
        headers=request.headers.raw,
        extensions=request.extensions,
    )
    return view, isinstance(request.stream, httpx2.ByteStream)


def _no_proxy(provider: Provider, what: str) -> None:
    if provider.proxy is not None:  # the environment's proxies: httpx2 reads them itself
        msg = (
            f"Provider({provider.name!r}): {what} with a proxy is not supported yet; "
            "use transport='httpool' (httpool's engine routes proxies for httpx2 clients)"
        )
        raise ConfigError(msg)


def httpx2_transport(provider: Provider, base: object) -> httpx2.AsyncBaseTransport:
    """The async httpx2 transport of `provider`, given its shared engine `base`.

    On httpool's engine (or with a policy: retries and limits are the provider's, for
    every kind), the httpx2 adapter sends through that same engine; with
    `transport="httpx"` and no policy, httpx2's own transport; an httpx2 transport
    object is used as it is.
    """
    if isinstance(base, httpx2.AsyncBaseTransport):
        return base
    spec = provider.transport
    if spec == "httpx" and not has_policy(provider):  # httpx2's own pool, as httpx's is
        _no_proxy(provider, "an httpx2 client on transport='httpx'")
        return httpx2.AsyncHTTPTransport(
            verify=verify_option(provider),
            http2=provider.http2,
            limits=_limits(provider),
            trust_env=provider.trust_env,
        )
    if isinstance(base, httpx.AsyncBaseTransport) and (
        spec in ("httpool", "httpx") or isinstance(base, PolicyTransport)
    ):
        return Httpx2PoolTransport(engine=base)
    msg = (
        f"Provider({provider.name!r}): its transport ({type(base).__name__}) serves "
        "httpx clients only; for httpx2 clients use transport='httpool' or 'httpx', or "
        "give an httpx2.AsyncBaseTransport (httpx2.MockTransport in tests)"
    )
    raise ConfigError(msg)


def build_async_client2(
    provider: Provider, gate: Gate, transport: httpx2.AsyncBaseTransport
) -> PooledAsyncClient2:
    """A new `httpx2.AsyncClient` for `provider`, sending through `transport`."""
    wrapped = Httpx2ProviderTransport(transport, gate)
    return PooledAsyncClient2(gate, transport=wrapped, **async_options(provider, _options))


def build_sync_client2(
    provider: Provider, gate: Gate, policy: PolicyTransport | None = None
) -> PooledClient2:
    """A new thread-safe `httpx2.Client` for `provider` (httpx2's own sync transport),
    under the provider's `policy` (its async clients' state) when it has one."""
    _no_proxy(provider, "a sync httpx2 client")
    transport: Any = httpx2.HTTPTransport(
        verify=verify_option(provider),
        http2=provider.http2,
        limits=_limits(provider),
        trust_env=provider.trust_env,
    )
    if policy is not None:
        transport = SyncPolicyTransport(
            transport,
            policy,
            view=_policy_view,
            map_error=_mapped,
            stream_base=httpx2.SyncByteStream,
            connect_errors=(httpx2.ConnectError, httpx2.ConnectTimeout),
            breaker_errors=(
                httpx2.ConnectError,
                httpx2.ConnectTimeout,
                httpx2.ReadTimeout,
                httpx2.WriteTimeout,
            ),
        )
    return PooledClient2(
        gate, transport=_SyncProviderTransport(transport, gate), **_options(provider)
    )
