"""Which proxy a request goes through: a proxy's settings, and the routes from config or env.

`ProxyConf` is one proxy (its URL without credentials, the `Proxy-Authorization` header
or SOCKS credentials, a masked label for display). `Routes` picks the proxy of a URL:
one proxy for everything (`Provider(proxy=...)`), or the environment's `HTTP_PROXY`,
`HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` read the way httpx reads them (upper and
lower case through `urllib.request.getproxies`, the lower case winning; `NO_PROXY`
with hosts, domains, `*`, IP addresses and CIDR ranges).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import ssl
import urllib.request
from typing import Any, Final

import httpx

from .._secret import MASK, Secret

__all__ = [
    "PROXY_SCHEMES",
    "ProxyConf",
    "ProxySpec",
    "Routes",
    "masked",
    "parse_proxy",
    "proxy_label",
]

PROXY_SCHEMES: Final = ("http", "https", "socks5", "socks5h", "socks4", "socks4a")
SOCKS: Final = frozenset({"socks5", "socks5h", "socks4", "socks4a"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
ProxySpec = str | httpx.Proxy | Secret | Any  # Any: httpx2.Proxy, read by its public fields


class ProxyConf:
    """One proxy: where it is, how to authenticate, and how it is shown (masked)."""

    __slots__ = (
        "_auth", "_hash", "_key", "headers", "host", "label", "port", "scheme", "ssl_context",
        "url",
    )  # fmt: skip

    def __init__(
        self,
        url: httpx.URL,
        auth: tuple[str, str] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url.copy_with(username=None, password=None)
        self.scheme = url.scheme
        self.host = url.host
        self.port = url.port or {"http": 80, "https": 443}.get(url.scheme, 1080)
        self._auth = auth
        self.ssl_context = ssl_context
        extra = list(headers or ())
        if auth is not None:
            Secret(auth[1])  # registered: the logging filter masks it anywhere
        if auth is not None and self.scheme in ("http", "https"):
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            Secret(token)  # registered: the logging filter masks it anywhere
            extra.append((b"Proxy-Authorization", b"Basic " + token.encode()))
        self.headers = tuple(extra)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.label = f"{self.scheme}://{MASK + '@' if auth else ''}{host}:{self.port}"
        # part of the pool key of every request through it: hashed once
        self._key = (str(self.url), auth, self.headers, id(ssl_context))
        self._hash = hash(self._key)

    @property
    def auth(self) -> tuple[str, str] | None:
        """The (user, password) pair, for the SOCKS handshake and other libraries."""
        return self._auth

    def as_httpx(self, *, auth_header: bool = False) -> httpx.Proxy:
        """The same proxy as an `httpx.Proxy` (for httpx's and aiohttp's transports).

        With `auth_header`, the credentials travel as the `Proxy-Authorization` header
        instead of user-info (httpx-aiohttp turns user-info into aiohttp's deprecated
        `BasicAuth`).
        """
        url = self.url
        if auth_header or self._auth is None:
            extra = list(self.headers)
        else:
            url = url.copy_with(username=self._auth[0], password=self._auth[1])
            extra = [(k, v) for k, v in self.headers if k.lower() != b"proxy-authorization"]
        return httpx.Proxy(url, headers=extra or None, ssl_context=self.ssl_context)

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, ProxyConf) and other._key == self._key)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"ProxyConf({self.label!r})"

    __str__ = __repr__


def masked(url: str) -> str:
    """A proxy URL as it may be shown: user-info replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = f"{MASK}@{authority.rsplit('@', 1)[1]}"
    return f"{scheme}{sep}{authority}{slash}{path}"


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
        return ProxyConf(url, auth)
    fields = ("url", "auth", "headers", "ssl_context")
    if all(hasattr(value, f) for f in fields):  # httpx.Proxy, or httpx2's
        proxy: Any = value
        url = httpx.URL(str(proxy.url))
        _check(url, str(url))
        given = proxy.headers
        raw = getattr(given, "raw", None)
        headers = list(raw) if raw is not None else [(k.encode(), v.encode()) for k, v in given]
        auth = tuple(proxy.auth) if proxy.auth else None
        return ProxyConf(url, auth, headers, proxy.ssl_context)
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


class _Rule:
    """One pattern of the proxy map (`all://*example.com`, `https://`, an IP network)."""

    __slots__ = ("host", "network", "port", "priority", "regex", "scheme")

    def __init__(self, scheme: str, host: str, port: int | None) -> None:
        self.scheme = "" if scheme == "all" else scheme
        self.port = port
        self.network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
        self.regex: re.Pattern[str] | None = None
        if host and host != "*":
            try:
                self.network = ipaddress.ip_network(host.strip("[]"), strict=False)
            except ValueError:
                if host.startswith("*."):  # subdomains only
                    self.regex = re.compile(f"^.+\\.{re.escape(host[2:])}$", re.IGNORECASE)
                elif host.startswith("*"):  # the domain and its subdomains
                    self.regex = re.compile(f"^(.+\\.)?{re.escape(host[1:])}$", re.IGNORECASE)
                else:
                    self.regex = re.compile(f"^{re.escape(host)}$", re.IGNORECASE)
        self.host = "" if host == "*" else host
        # httpx's order: a port first, then the longer host, then the longer scheme
        self.priority = (0 if port is not None else 1, -len(self.host), -len(self.scheme))

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        if self.scheme and self.scheme != scheme:
            return False
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host.strip("[]")) in self.network
            except ValueError:
                return False
        return self.regex is None or self.regex.match(host) is not None


def _rule(pattern: str) -> _Rule:
    """A rule from a mount-style pattern `scheme://host[:port]` (host may be a CIDR)."""
    scheme, _, rest = pattern.partition("://")
    rest = rest.rstrip("/")
    port: int | None = None
    if rest.startswith("["):  # [v6] or [v6]:port
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
    elif "/" in rest:  # a CIDR range: no port
        host = rest
    else:
        host, _, port_text = rest.partition(":")
        if port_text.isdigit():
            port = int(port_text)
    return _Rule(scheme.lower(), host.lower(), port)


def _environment() -> list[tuple[_Rule, ProxyConf | None]]:
    """The proxy rules of the environment, as httpx reads them (and CIDR as ranges)."""
    info = urllib.request.getproxies()
    rules: list[tuple[_Rule, ProxyConf | None]] = []
    for scheme in ("http", "https", "all"):
        url = info.get(scheme)
        if url:
            rules.append((_rule(f"{scheme}://"), parse_proxy(url)))
    for item in info.get("no", "").split(","):
        host = item.strip()
        if host == "*":
            return []
        if not host:
            continue
        if "://" in host:
            rules.append((_rule(host), None))
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
            rules.append((_rule(f"all://{host}"), None))
        else:
            rules.append((_rule(f"all://*{host}"), None))
    return rules


class Routes:
    """The proxy (or none) for each URL: one for all, or the environment's map."""

    __slots__ = ("_cache", "_rules", "proxies")

    def __init__(self, rules: list[tuple[_Rule, ProxyConf | None]]) -> None:
        self._rules = sorted(rules, key=lambda r: r[0].priority)
        self.proxies = tuple(dict.fromkeys(p for _, p in self._rules if p is not None))
        self._cache: dict[tuple[bytes, bytes, int], ProxyConf | None] = {}

    @classmethod
    def build(cls, proxy: object, trust_env: bool) -> Routes | None:
        """The routes of a given proxy, else of the environment; None when no proxy."""
        if proxy is not None:
            conf = proxy if isinstance(proxy, ProxyConf) else parse_proxy(proxy)
            return cls([(_rule("all://"), conf)])
        if not trust_env:
            return None
        routes = cls(_environment())
        return routes if routes.proxies else None

    def route(self, scheme: bytes, host: bytes, port: int) -> ProxyConf | None:
        """The proxy for a request to `scheme://host:port` (the host IDNA-encoded, the
        port always given), or None to connect directly."""
        key = (scheme, host, port)
        try:
            return self._cache[key]
        except KeyError:
            pass
        text = scheme.decode("ascii")
        given = None if _DEFAULT_PORTS.get(text) == port else port  # as in a URL
        found: ProxyConf | None = None
        for rule, conf in self._rules:
            if rule.matches(text, host.decode("ascii"), given):
                found = conf
                break
        if len(self._cache) < 1024:
            self._cache[key] = found
        return found

    def describe(self) -> list[str]:
        """The proxies in use, masked (for stats and the status page)."""
        return [p.label for p in self.proxies]


def proxy_label(value: object) -> str:
    """How a configured proxy is shown: its masked URL (or its type if it has none)."""
    try:
        return parse_proxy(value).label
    except (TypeError, ValueError):
        return f"<{type(value).__name__}>"
