"""Building a provider's httpx clients: the transport, the credentials, the origin guard."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from ._config import Provider, origin_of
from ._errors import OriginNotAllowedError
from ._secret import Secret

__all__ = ["ProviderClient", "SyncProviderClient", "build_async_client", "build_sync_client"]

logger = logging.getLogger("httpool")
_warned_unverified: set[str] = set()


class _OriginGuard:
    """The origins a provider's credentials may go to, and the check of a request's URL."""

    __slots__ = ("_allowed", "_header_names", "_name", "_shown")

    def __init__(self, provider: Provider) -> None:
        self._name = provider.name
        origins = ([provider.origin] if provider.origin else []) + list(provider.allowed_origins)
        self._shown = tuple(origins)
        self._allowed = frozenset(_key(httpx.URL(o)) for o in origins)
        self._header_names = frozenset(h.lower() for h in provider.headers)

    def check(self, url: httpx.URL) -> None:
        if self._allowed and _key(url) not in self._allowed:
            raise OriginNotAllowedError(self._name, origin_of(url), self._shown)

    def redirect_headers(self, headers: httpx.Headers, url: httpx.URL) -> httpx.Headers:
        """Drop every header the provider sets when a redirect leaves its origins."""
        if not self._allowed or _key(url) in self._allowed:
            return headers
        for name in self._header_names:
            headers.pop(name, None)
        headers.pop("authorization", None)
        return headers


def _key(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, port)


class ProviderClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` that keeps its provider's credentials at their origin."""

    def __init__(self, provider: Provider, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provider_name = provider.name
        self._guard = _OriginGuard(provider)

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        self._guard.check(request.url)
        return await super().send(request, **kwargs)

    def _redirect_headers(
        self, request: httpx.Request, url: httpx.URL, method: str
    ) -> httpx.Headers:
        headers = super()._redirect_headers(request, url, method)
        return self._guard.redirect_headers(headers, url)

    def __repr__(self) -> str:
        return f"<httpool client {self.provider_name!r}>"


class SyncProviderClient(httpx.Client):
    """The thread-safe `httpx.Client` twin of `ProviderClient`, for `def` routes."""

    def __init__(self, provider: Provider, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provider_name = provider.name
        self._guard = _OriginGuard(provider)

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        self._guard.check(request.url)
        return super().send(request, **kwargs)

    def _redirect_headers(
        self, request: httpx.Request, url: httpx.URL, method: str
    ) -> httpx.Headers:
        headers = super()._redirect_headers(request, url, method)
        return self._guard.redirect_headers(headers, url)

    def __repr__(self) -> str:
        return f"<httpool sync client {self.provider_name!r}>"


def _auth(provider: Provider) -> httpx.Auth | tuple[str, str] | None:
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
    }


def make_transport(provider: Provider) -> httpx.AsyncBaseTransport:
    """The async transport that `provider.transport` names or gives."""
    spec = provider.transport
    if isinstance(spec, httpx.AsyncBaseTransport):
        return spec
    if callable(spec) and not isinstance(spec, str):
        return spec()
    options: dict[str, Any] = {
        "verify": provider.verify,
        "http2": provider.http2,
        "limits": provider.limits,
    }
    if spec == "httpx":
        return httpx.AsyncHTTPTransport(**options)
    if spec == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport: httpx.AsyncBaseTransport = AiohttpTransport(**options)
        return transport
    from ._transport import PoolTransport

    return PoolTransport(
        **options, max_lifetime=provider.max_lifetime, retry_post=provider.retry_post
    )


def build_async_client(
    provider: Provider,
) -> tuple[ProviderClient, httpx.AsyncBaseTransport]:
    """A new `httpx.AsyncClient` for `provider`, and its transport (for stats)."""
    transport = make_transport(provider)
    hooks = dict(provider.event_hooks or {})
    client = ProviderClient(
        provider,
        transport=transport,
        event_hooks={k: list(v) for k, v in hooks.items()},
        **_common(provider),
    )
    return client, transport


def build_sync_client(provider: Provider) -> SyncProviderClient:
    """A new thread-safe `httpx.Client` for `provider` (httpx's own sync transport)."""
    transport = httpx.HTTPTransport(
        verify=provider.verify, http2=provider.http2, limits=provider.limits
    )
    return SyncProviderClient(provider, transport=transport, **_common(provider))
