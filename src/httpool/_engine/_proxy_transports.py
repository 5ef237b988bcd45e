"""Proxies for the transports httpool does not own: httpx's, aiohttp's and the sync one.

Each gets one inner transport per proxy of the provider's `Routes` (and one for direct
connections), and a router that sends each request to the one its URL calls for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from ._proxy import SOCKS, ProxyConf, Routes

__all__ = ["AsyncRouter", "SyncRouter", "check_support", "proxy_labels", "routed", "routed_sync"]

_SUPPORT = {
    "httpool": ("http", "https", "socks5", "socks5h", "socks4", "socks4a"),
    "httpx": ("http", "https", "socks5", "socks5h"),
    "aiohttp": ("http", "https"),
    "sync": ("http", "https", "socks5", "socks5h"),
}


def check_support(routes: Routes | None, kind: str, where: str) -> None:
    """Refuse a proxy scheme that transport `kind` cannot use, naming it and the way out."""
    from .._errors import ConfigError

    if routes is None:
        return
    for proxy in routes.proxies:
        if proxy.scheme not in _SUPPORT[kind]:
            msg = (
                f"{where}.proxy: {proxy.label} is a {proxy.scheme} proxy, which the "
                f"{kind} transport cannot use (it takes {', '.join(_SUPPORT[kind])}); "
                "use transport='httpool' (the default), which speaks every proxy scheme"
            )
            raise ConfigError(msg)
        if proxy.scheme in SOCKS:
            import importlib.util

            module, install = _SOCKS_LIBRARY["httpool" if kind == "httpool" else "httpx"]
            if importlib.util.find_spec(module) is None:
                msg = f"{where}.proxy: {proxy.label} needs the {module} package: {install}"
                raise ConfigError(msg)


_SOCKS_LIBRARY = {
    "httpool": ("python_socks", "pip install 'httpool[socks]'"),
    "httpx": (
        "socksio",
        "pip install 'httpx[socks]', or use transport='httpool' (the default) with "
        "pip install 'httpool[socks]'",
    ),
}


def _labels(routes: Routes) -> list[str]:
    return routes.describe()


def _route(routes: Routes, url: httpx.URL) -> ProxyConf | None:
    """The proxy of a request to `url`, or None."""
    scheme = url.raw_scheme
    return routes.route(scheme, url.raw_host, url.port or (443 if scheme == b"https" else 80))


class AsyncRouter(httpx.AsyncBaseTransport):
    """Sends each request to the inner transport of its proxy (or the direct one).

    With `auth_on_plain`, a plain-http request through a proxy that has credentials
    carries them itself (aiohttp sends its proxy headers only on CONNECT): the inner
    transport gets a copy of the request with `Proxy-Authorization`; the caller's
    request, which its response keeps, is left as it was.
    """

    def __init__(
        self,
        routes: Routes,
        make: Callable[[ProxyConf | None], httpx.AsyncBaseTransport],
        *,
        auth_on_plain: bool = False,
    ) -> None:
        self._routes = routes
        self._auth_on_plain = auth_on_plain
        self._direct = make(None)
        self._via = {proxy: make(proxy) for proxy in routes.proxies}
        self.proxy_labels = _labels(routes)
        self.transport_name = type(self._direct).__name__

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        proxy = _route(self._routes, request.url)
        if proxy is None:
            return await self._direct.handle_async_request(request)
        if self._auth_on_plain and request.url.scheme == "http" and proxy.auth is not None:
            headers = [*request.headers.raw, *proxy.headers]
            request = httpx.Request(
                request.method,
                request.url,
                headers=headers,
                stream=request.stream,
                extensions=request.extensions,
            )
        return await self._via[proxy].handle_async_request(request)

    async def aclose(self) -> None:
        for transport in (self._direct, *self._via.values()):
            await transport.aclose()


class SyncRouter(httpx.BaseTransport):
    """The sync twin of `AsyncRouter`."""

    def __init__(
        self, routes: Routes, make: Callable[[ProxyConf | None], httpx.BaseTransport]
    ) -> None:
        self._routes = routes
        self._direct = make(None)
        self._via = {proxy: make(proxy) for proxy in routes.proxies}
        self.proxy_labels = _labels(routes)
        self.transport_name = type(self._direct).__name__

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        proxy = _route(self._routes, request.url)
        transport = self._direct if proxy is None else self._via[proxy]
        return transport.handle_request(request)

    def close(self) -> None:
        for transport in (self._direct, *self._via.values()):
            transport.close()


def routed(
    routes: Routes | None,
    make: Callable[[ProxyConf | None], httpx.AsyncBaseTransport],
    *,
    auth_on_plain: bool = False,
) -> httpx.AsyncBaseTransport:
    """`make(None)` without proxies, else a router over `make(proxy)` for each proxy."""
    if routes is None:
        return make(None)
    return AsyncRouter(routes, make, auth_on_plain=auth_on_plain)


def routed_sync(
    routes: Routes | None, make: Callable[[ProxyConf | None], httpx.BaseTransport]
) -> httpx.BaseTransport:
    """The sync twin of `routed`."""
    return make(None) if routes is None else SyncRouter(routes, make)


def proxy_labels(transport: Any) -> list[str] | None:
    """The proxies a transport goes through, masked, or None when it connects directly."""
    labels = getattr(transport, "proxy_labels", None)
    return list(labels) if labels else None
