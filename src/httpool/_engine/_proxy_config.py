"""A proxy as the user gives it, read into the engine's `ProxyConf` and `Routes`.

A proxy comes as a URL string, an `httpool.Secret` URL, an `httpx.Proxy` or httpx2's
twin, or from the environment's `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`
(upper and lower case through `urllib.request.getproxies`, the lower case winning, as
httpx reads them). URLs are read by `httpx.URL`, so a proxy httpx refuses is refused
here too; the engine gets plain values. `as_httpx` gives a proxy back to httpx's and
aiohttp's transports.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from typing import Any

import httpx

from .._secret import Secret
from ._proxy import PROXY_SCHEMES, ProxyConf, Routes, Rule, masked, rule

__all__ = ["ProxySpec", "as_httpx", "build_routes", "parse_proxy", "proxy_label"]

ProxySpec = str | httpx.Proxy | Secret | Any  # Any: httpx2.Proxy, read by its public fields


def _conf(
    url: httpx.URL,
    auth: tuple[str, str] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    ssl_context: Any = None,
) -> ProxyConf:
    """The engine's `ProxyConf` of a parsed proxy URL (its credentials taken out)."""
    bare = str(url.copy_with(username=None, password=None))
    return ProxyConf(
        bare, url.scheme, url.host, url.port, auth=auth, headers=headers, ssl_context=ssl_context
    )


def parse_proxy(value: object) -> ProxyConf:
    """A `ProxyConf` from a URL string, a `Secret` URL, an `httpx.Proxy` or httpx2's twin.

    Raises `ValueError` with a message that shows the URL masked.
    """
    if isinstance(value, Secret):
        value = value.get_secret_value()
    if isinstance(value, str):
        text = value if "://" in value else f"http://{value}"
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL:
            msg = f"{masked(text)!r} is not a valid proxy URL"
            raise ValueError(msg) from None
        _check(url, text)
        auth = None
        if url.username or url.password:
            auth = (url.username, url.password)
        return _conf(url, auth)
    fields = ("url", "auth", "headers", "ssl_context")
    if all(hasattr(value, f) for f in fields):  # httpx.Proxy, or httpx2's
        proxy: Any = value
        url = httpx.URL(str(proxy.url))
        _check(url, str(url))
        given = proxy.headers
        raw = getattr(given, "raw", None)
        headers = list(raw) if raw is not None else [(k.encode(), v.encode()) for k, v in given]
        auth = tuple(proxy.auth) if proxy.auth else None
        return _conf(url, auth, headers, proxy.ssl_context)
    msg = f"expected a proxy URL (str), httpool.Secret or httpx.Proxy, got {type(value).__name__}"
    raise TypeError(msg)


def _check(url: httpx.URL, text: str) -> None:
    if url.scheme not in PROXY_SCHEMES:
        msg = (
            f"{masked(text)!r}: unsupported proxy scheme {url.scheme!r}; "
            f"use one of {', '.join(s + '://' for s in PROXY_SCHEMES)}"
        )
        raise ValueError(msg)
    if not url.host:
        msg = f"{masked(text)!r}: the proxy URL has no host"
        raise ValueError(msg)


def _environment() -> list[tuple[Rule, ProxyConf | None]]:
    """The proxy rules of the environment, as httpx reads them (and CIDR as ranges)."""
    info = urllib.request.getproxies()
    rules: list[tuple[Rule, ProxyConf | None]] = []
    for scheme in ("http", "https", "all"):
        url = info.get(scheme)
        if url:
            rules.append((rule(f"{scheme}://"), parse_proxy(url)))
    for item in info.get("no", "").split(","):
        host = item.strip()
        if host == "*":
            return []
        if not host:
            continue
        if "://" in host:
            rules.append((rule(host), None))
            continue
        try:
            ipaddress.ip_network(host.strip("[]"), strict=False)
        except ValueError:
            is_ip = False
        else:
            is_ip = True
        if is_ip and ":" in host and "/" not in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address, as httpx writes it
        if is_ip or host.lower() == "localhost":
            rules.append((rule(f"all://{host}"), None))
        else:
            rules.append((rule(f"all://*{host}"), None))
    return rules


def build_routes(proxy: object, trust_env: bool) -> Routes | None:
    """The routes of a given proxy, else of the environment; None when no proxy."""
    if proxy is not None:
        conf = proxy if isinstance(proxy, ProxyConf) else parse_proxy(proxy)
        return Routes([(rule("all://"), conf)])
    if not trust_env:
        return None
    routes = Routes(_environment())
    return routes if routes.proxies else None


def proxy_label(value: object) -> str:
    """How a configured proxy is shown: its masked URL (or its type if it has none)."""
    try:
        return parse_proxy(value).label
    except (TypeError, ValueError):
        return f"<{type(value).__name__}>"


def as_httpx(conf: ProxyConf, *, auth_header: bool = False) -> httpx.Proxy:
    """The same proxy as an `httpx.Proxy` (for httpx's and aiohttp's transports).

    With `auth_header`, the credentials travel as the `Proxy-Authorization` header
    instead of user-info (httpx-aiohttp turns user-info into aiohttp's deprecated
    `BasicAuth`).
    """
    url = httpx.URL(conf.url)
    auth = conf.auth
    if auth_header or auth is None:
        extra = list(conf.headers)
    else:
        url = url.copy_with(username=auth[0], password=auth[1])
        extra = [(k, v) for k, v in conf.headers if k.lower() != b"proxy-authorization"]
    return httpx.Proxy(url, headers=extra or None, ssl_context=conf.ssl_context)
