"""Checks of a `Provider`'s fields: each failure is a `ConfigError` naming the field."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import ssl
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import httpx

from ._errors import ConfigError
from ._secret import Secret, redact_url

if TYPE_CHECKING:
    from ._config import Provider

__all__ = ["TRANSPORT_NAMES", "origin_of", "validate_name", "validate_provider"]

TRANSPORT_NAMES: Final = ("httpool", "httpx", "aiohttp")


def origin_of(url: Any) -> str:
    """`scheme://host[:port]` of an httpx or httpx2 URL, the default port left out."""
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    port = "" if url.port in (None, default_port) else f":{url.port}"
    return f"{url.scheme}://{url.host}{port}"


_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_CHARS: Final = re.compile(r"[\r\n\x00]")
#: What a header value may hold: visible ASCII, space and tab (httpx encodes str values
#: as ASCII; other control characters are refused by HTTP parsers).
_HEADER_VALUE: Final = re.compile(r"[\t\x20-\x7e]*")
#: Quoted parts of an httpx.InvalidURL message: they echo the bad input (a port, a host).
_QUOTED: Final = re.compile(r"'[^']*'|\"[^\"]*\"")


def validate_name(name: object, *, where: str = "Provider") -> str:
    """A provider name: a short identifier-like string."""
    if not isinstance(name, str):
        msg = f"{where}(name): the provider name must be a str, got {type(name).__name__}"
        raise TypeError(msg)
    if not _NAME.fullmatch(name):
        msg = (
            f"{where}(name={name!r}): a provider name is 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, e.g. 'openai'"
        )
        raise ConfigError(msg)
    return name


def validate_provider(p: Provider) -> dict[str, Any]:
    """Check every field of `p`; return the normalised values to store."""
    validate_name(p.name)
    where = f"Provider({p.name!r})"
    return {
        "base_url": _base_url(where, p.base_url),
        "headers": _headers(where, p.headers),
        "auth": _auth(where, p.auth),
        "timeout": _timeout(where, p.timeout),
        "limits": _limits(where, p.limits),
        "http2": _flag(where, "http2", p.http2),
        "follow_redirects": _flag(where, "follow_redirects", p.follow_redirects),
        "retry_post": _flag(where, "retry_post", p.retry_post),
        "verify": _verify(where, p.verify),
        "event_hooks": _event_hooks(where, p.event_hooks),
        "transport": _transport(where, p.transport),
        "max_lifetime": _seconds(where, "max_lifetime", p.max_lifetime),
        "allowed_origins": _allowed_origins(where, p.allowed_origins),
        "health_path": _health_path(where, p.health_path),
        "warmup": _count(where, "warmup", p.warmup),
        "required": _flag(where, "required", p.required),
        "proxy": _proxy(where, p.proxy, p.transport),
        "trust_env": _flag(where, "trust_env", p.trust_env),
        "dns_ttl": _number(where, "dns_ttl", p.dns_ttl, allow_none=False),
    }


def _fail(where: str, field: str, problem: str) -> ConfigError:
    return ConfigError(f"{where}.{field}: {problem}")


def _shown(value: object) -> str:
    """A wrong value as an error may show it: a number as itself, anything else by type
    only (a string in the wrong field may be a credential)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _base_url(where: str, value: object) -> str:
    if isinstance(value, httpx.URL):
        value = str(value)
    if not isinstance(value, str):
        raise _fail(where, "base_url", f"expected a str URL, got {type(value).__name__}")
    if not value:
        return value
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:  # neither the URL nor its bad part is echoed
        reason = _QUOTED.sub("...", str(exc))
        raise _fail(where, "base_url", f"not a valid URL ({reason})") from None
    shown = redact_url(value)
    if url.scheme not in ("http", "https"):
        hint = f"; write 'https://{shown}'" if not url.scheme else ""
        problem = f"{shown!r} needs an http:// or https:// scheme{hint}"
        raise _fail(where, "base_url", problem)
    if not url.host:
        raise _fail(where, "base_url", f"{shown!r} has no host")
    if url.userinfo:
        problem = f"{shown!r} carries credentials; pass them as headers=... or auth=..."
        raise _fail(where, "base_url", problem)
    return value


def _headers(where: str, value: object) -> Mapping[str, str | Secret]:
    if not isinstance(value, Mapping):
        raise _fail(where, "headers", f"expected a mapping, got {type(value).__name__}")
    out: dict[str, str | Secret] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _HEADER_NAME.fullmatch(key):
            raise _fail(where, "headers", f"{key!r} is not a valid header name")
        if isinstance(item, Secret):
            text = item.get_secret_value()
        elif isinstance(item, str):
            text = item
        else:
            problem = f"the value of {key!r} must be a str or httpool.Secret, got "
            raise _fail(where, "headers", problem + type(item).__name__)
        if _BAD_VALUE_CHARS.search(text):
            problem = f"the value of {key!r} contains a line break or NUL (header injection)"
            raise _fail(where, "headers", problem)
        if not _HEADER_VALUE.fullmatch(text):
            problem = (
                f"the value of {key!r} holds a character that is not printable ASCII (a "
                "non-ASCII letter or a control character); HTTP header values are ASCII: "
                "percent- or base64-encode it as the API documents"
            )
            raise _fail(where, "headers", problem)
        if any(k.lower() == key.lower() for k in out):
            raise _fail(where, "headers", f"{key!r} is given twice (header names ignore case)")
        out[key] = item
    return MappingProxyType(out)


def _httpx2_value(value: object, name: str) -> bool:
    """Whether `value` is an instance of httpx2's class `name` (httpx2 is optional)."""
    httpx2 = sys.modules.get("httpx2")  # loaded if such a value exists
    return httpx2 is not None and isinstance(value, getattr(httpx2, name))


def _auth(where: str, value: object) -> object:
    if value is None or isinstance(value, httpx.Auth) or _httpx2_value(value, "Auth"):
        return value
    if isinstance(value, tuple) and len(value) == 2:  # noqa: SIM102 - reads better
        if all(isinstance(v, str | Secret) for v in value):
            return value
    problem = "expected an httpx.Auth, an httpx2.Auth or a (user, password) pair of str/Secret"
    raise _fail(where, "auth", problem)


def _number(where: str, field: str, value: object, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, field, f"expected seconds as a number, got {_shown(value)}")
    if not math.isfinite(value) or value < 0:
        raise _fail(where, field, f"must be a finite number >= 0, got {_shown(value)}")
    return float(value)


def _seconds(where: str, field: str, value: object) -> float | None:
    seconds = _number(where, field, value, allow_none=True)
    if seconds == 0:
        raise _fail(where, field, "must be > 0 (or None for no limit)")
    return seconds


def _timeout(where: str, value: object) -> httpx.Timeout:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = httpx.Timeout(_number(where, "timeout", value, allow_none=False))
    if _httpx2_value(value, "Timeout"):  # kept as httpx's, with the same values
        value = httpx.Timeout(**value.as_dict())  # type: ignore[attr-defined]
    if not isinstance(value, httpx.Timeout):
        problem = f"expected httpx.Timeout, httpx2.Timeout or seconds, got {_shown(value)}"
        raise _fail(where, "timeout", problem)
    for part in ("connect", "read", "write", "pool"):
        _number(where, f"timeout.{part}", getattr(value, part), allow_none=True)
    return value


def _limits(where: str, value: object) -> httpx.Limits:
    if _httpx2_value(value, "Limits"):  # kept as httpx's, with the same values
        value = httpx.Limits(
            max_connections=value.max_connections,  # type: ignore[attr-defined]
            max_keepalive_connections=value.max_keepalive_connections,  # type: ignore[attr-defined]
            keepalive_expiry=value.keepalive_expiry,  # type: ignore[attr-defined]
        )
    if not isinstance(value, httpx.Limits):
        problem = f"expected httpx.Limits or httpx2.Limits, got {type(value).__name__}"
        raise _fail(where, "limits", problem)
    for part in ("max_connections", "max_keepalive_connections"):
        count = getattr(value, part)
        if count is None:
            continue
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            problem = f"must be a whole number >= 1, got {_shown(count)}"
            raise _fail(where, f"limits.{part}", problem)
    _number(where, "limits.keepalive_expiry", value.keepalive_expiry, allow_none=True)
    return value


def _flag(where: str, field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, field, f"expected True or False, got {_shown(value)}")
    return value


def _verify(where: str, value: object) -> object:
    from ._engine._truststore import MISSING, SYSTEM, available

    if value == SYSTEM:
        if not available():
            raise _fail(where, "verify", MISSING)
        return value
    if isinstance(value, str):
        if not value or not os.path.exists(value):
            problem = (
                "the CA bundle path does not exist; give the path of a PEM file or "
                "directory of CA certificates, or an ssl.SSLContext"
            )
            raise _fail(where, "verify", problem)
        if not os.access(value, os.R_OK):
            raise _fail(where, "verify", "the CA bundle path cannot be read by this process")
        return value
    if isinstance(value, bool | ssl.SSLContext):
        return value
    problem = "expected True, False, 'system', a CA bundle path or an ssl.SSLContext"
    raise _fail(where, "verify", problem)


def _event_hooks(where: str, value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(where, "event_hooks", "expected {'request': [...], 'response': [...]}")
    for key, hooks in value.items():
        if key not in ("request", "response"):
            raise _fail(where, "event_hooks", f"unknown hook {key!r}; use 'request' or 'response'")
        if not isinstance(hooks, list | tuple) or not all(callable(h) for h in hooks):
            raise _fail(where, f"event_hooks[{key!r}]", "expected a list of callables")
    return MappingProxyType({k: tuple(v) for k, v in value.items()})


def _transport(where: str, value: object) -> object:
    if isinstance(value, httpx.AsyncBaseTransport) or _httpx2_value(value, "AsyncBaseTransport"):
        return value
    if isinstance(value, str):
        if value not in TRANSPORT_NAMES:
            problem = f"unknown transport name; use one of {', '.join(TRANSPORT_NAMES)}"
            raise _fail(where, "transport", problem + ", or an httpx.AsyncBaseTransport")
        if value == "aiohttp" and importlib.util.find_spec("httpx_aiohttp") is None:
            problem = "'aiohttp' needs the httpx-aiohttp package: pip install 'httpool[aiohttp]'"
            raise _fail(where, "transport", problem)
        return value
    if callable(value):
        return value
    problem = "expected 'httpool', 'httpx', 'aiohttp', an httpx.AsyncBaseTransport or a factory"
    raise _fail(where, "transport", problem)


def _health_path(where: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or _BAD_VALUE_CHARS.search(value):
        shown = repr(redact_url(value)) if isinstance(value, str) else _shown(value)
        raise _fail(where, "health_path", f"expected a path starting with '/', got {shown}")
    return value


def _count(where: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
        raise _fail(where, field, f"expected a whole number from 0 to 1000, got {_shown(value)}")
    return value


def _allowed_origins(where: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise _fail(where, "allowed_origins", "expected a list of 'https://host[:port]' strings")
    out: list[str] = []
    for item in value:
        try:
            url = _base_url(where, item)
        except ConfigError:
            url = ""
        if not url:  # named by position: an item that is no URL may be anything
            problem = f"item {len(out)} is not an http(s) origin like 'https://host'"
            raise _fail(where, "allowed_origins", problem)
        out.append(origin_of(httpx.URL(url)))
    return tuple(out)


def _proxy(where: str, value: object, transport: object) -> object:
    from ._engine._proxy_config import build_routes
    from ._engine._proxy_transports import check_support

    if value is None:
        return None
    try:
        routes = build_routes(value, trust_env=False)
    except (TypeError, ValueError) as exc:  # the message shows the URL masked
        raise _fail(where, "proxy", str(exc)) from None
    if isinstance(transport, str):  # a transport given as an object is used as it is
        check_support(routes, transport, where)
    return value
