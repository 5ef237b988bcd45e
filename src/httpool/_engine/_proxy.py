"""Which proxy a request goes through: a proxy's settings, and the routes.

`ProxyConf` is one proxy (its URL without credentials, the `Proxy-Authorization` header
or SOCKS credentials, a masked label for display), as plain values. `Routes` picks the
proxy of a request: one proxy for everything (`Provider(proxy=...)`), or the rules of
the environment's `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` (hosts,
domains, `*`, IP addresses and CIDR ranges). Both are made from what the user gives by
`_proxy_config`, which reads proxy URLs as httpx reads them.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import ssl
from typing import Final

import idna

from .._secret import MASK, Secret

__all__ = ["PROXY_SCHEMES", "SOCKS", "ProxyConf", "Routes", "Rule", "masked", "rule"]

PROXY_SCHEMES: Final = ("http", "https", "socks5", "socks5h", "socks4", "socks4a")
SOCKS: Final = frozenset({"socks5", "socks5h", "socks4", "socks4a"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class ProxyConf:
    """One proxy: where it is, how to authenticate, and how it is shown (masked)."""

    __slots__ = (
        "_auth", "_hash", "_key", "headers", "host", "label", "port", "scheme", "ssl_context",
        "url",
    )  # fmt: skip

    def __init__(
        self,
        url: str,
        scheme: str,
        host: str,
        port: int | None,
        *,
        auth: tuple[str, str] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url  # without credentials
        self.scheme = scheme
        self.host = host
        self.port = port or {"http": 80, "https": 443}.get(scheme, 1080)
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
        self._key = (url, auth, self.headers, id(ssl_context))
        self._hash = hash(self._key)

    @property
    def auth(self) -> tuple[str, str] | None:
        """The (user, password) pair, for the SOCKS handshake and other libraries."""
        return self._auth

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


def _ascii_host(pattern: str) -> str:
    """A host pattern as the requests' hosts are matched: IDNA-encoded, as httpx encodes
    a URL's host (a pattern idna refuses is kept, and matches no such host)."""
    if pattern.isascii():
        return pattern
    wildcard, name = ("*.", pattern[2:]) if pattern.startswith("*.") else ("", pattern)
    if not wildcard and name.startswith("*"):
        wildcard, name = "*", name[1:]
    try:
        return wildcard + idna.encode(name.lower()).decode("ascii")
    except idna.IDNAError:
        return pattern


class Rule:
    """One pattern of the proxy map (`all://*example.com`, `https://`, an IP network)."""

    __slots__ = ("host", "network", "port", "priority", "regex", "scheme")

    def __init__(self, scheme: str, host: str, port: int | None) -> None:
        host = _ascii_host(host)
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


def rule(pattern: str) -> Rule:
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
    return Rule(scheme.lower(), host.lower(), port)


class Routes:
    """The proxy (or none) for each URL: one for all, or the environment's map."""

    __slots__ = ("_cache", "_rules", "proxies")

    def __init__(self, rules: list[tuple[Rule, ProxyConf | None]]) -> None:
        self._rules = sorted(rules, key=lambda r: r[0].priority)
        self.proxies = tuple(dict.fromkeys(p for _, p in self._rules if p is not None))
        self._cache: dict[tuple[bytes, bytes, int], ProxyConf | None] = {}

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
        for pattern, conf in self._rules:
            if pattern.matches(text, host.decode("ascii"), given):
                found = conf
                break
        if len(self._cache) < 1024:
            self._cache[key] = found
        return found

    def describe(self) -> list[str]:
        """The proxies in use, masked (for stats and the status page)."""
        return [p.label for p in self.proxies]
