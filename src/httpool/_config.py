"""`Provider`: the frozen, validated configuration of one named upstream."""

from __future__ import annotations

import dataclasses
import logging
import math
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import httpx

from ._engine._proxy_config import proxy_label
from ._engine._transport import as_httpx_limits
from ._errors import ConfigError
from ._policy import Breaker, RateLimit, Retry, validate_policy
from ._secret import MASK, Secret, redact_url
from ._validate import TRANSPORT_NAMES, origin_of, validate_provider

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "OVERRIDES",
    "TRANSPORT_NAMES",
    "Provider",
    "TransportName",
    "TransportSpec",
    "as_httpx_limits",
    "limits",
    "origin_of",
    "timeout",
]

logger = logging.getLogger("httpool")

#: Connect fast, wait long for the model: LLM responses take tens of seconds, and a
#: streamed answer may pause between tokens; a dead host should fail in seconds.
DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=5.0, read=60.0, write=10.0, pool=10.0)

#: Keep as many connections alive as may be open, so a burst of 100 concurrent calls is
#: served again without new TCP+TLS set-ups; drop idle ones after 30 s, well before most
#: providers' load balancers close them (60-350 s).
DEFAULT_LIMITS: Final = httpx.Limits(
    max_connections=100, max_keepalive_connections=100, keepalive_expiry=30.0
)

TransportName: TypeAlias = Literal["httpool", "httpx", "aiohttp"]
TransportSpec: TypeAlias = (
    "TransportName | httpx.AsyncBaseTransport | httpx2.AsyncBaseTransport "
    "| Callable[[], httpx.AsyncBaseTransport | httpx2.AsyncBaseTransport]"
)
EventHooks: TypeAlias = Mapping[str, Sequence[Callable[..., Any]]]
AuthSpec: TypeAlias = "httpx.Auth | httpx2.Auth | tuple[str | Secret, str | Secret] | None"

#: The flat keyword overrides of `ClientPool.get_client`, as CodeWeaver's pool takes them.
OVERRIDES: Final = frozenset(
    {
        "max_connections",
        "max_keepalive_connections",
        "keepalive_expiry",
        "connect_timeout",
        "read_timeout",
        "write_timeout",
        "pool_timeout",
        "http2",
    }
)


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Provider:
    """The configuration of one named upstream, validated when it is made.

    Arguments:
        name: how routes ask for the client: `httpool.client("openai")`. Letters,
            digits, `_`, `-` and `.`.
        base_url: the provider's API root, with scheme, e.g. `https://api.openai.com/v1`.
            Requests use paths relative to it; the provider's headers and auth are only
            sent to this origin (and `allowed_origins`).
        headers: default headers; wrap credentials in `Secret` so they never show.
        auth: an `httpx.Auth`, or a `(user, password)` pair for basic auth.
        timeout: an `httpx.Timeout` or seconds; see `DEFAULT_TIMEOUT`. To change a few
            fields and keep httpool's defaults for the rest: `httpool.timeout(read=90)`.
        limits: an `httpx.Limits`; see `DEFAULT_LIMITS`. To change a few fields and keep
            httpool's defaults for the rest: `httpool.limits(max_connections=50)`.
        http2: offer HTTP/2 (ALPN) on https origins; plain http stays on HTTP/1.1.
        follow_redirects: as in httpx; off by default.
        verify: TLS verification as in httpx (`True`, a CA bundle path or an
            `ssl.SSLContext`), or `"system"`: the operating system's trust store (a
            company CA installed in the OS; needs `httpool[truststore]`). Turning it
            off logs a warning when the client is made.
        event_hooks: httpx event hooks, `{"request": [...], "response": [...]}`.
        transport: `"httpool"` (the default, httpool's `PoolTransport`), `"httpx"`
            (httpx's own pool), `"aiohttp"` (needs `httpool[aiohttp]`), an
            `httpx.AsyncBaseTransport` instance (for tests: `httpx.MockTransport`), or a
            zero-argument factory that returns a new transport for each app run.
        max_lifetime: seconds after which a connection is retired once idle, so a
            long-busy pool re-resolves DNS (httpool transport only).
        retry_post: retry a POST once on a fresh connection when a reused one died
            before any response byte (for APIs with idempotency keys).
        allowed_origins: other origins (`https://host[:port]`) that may receive this
            provider's credentials.
        health_path: a path (relative to `base_url`) that answers 2xx when the provider
            is up; the health route (`httpool.router()`) calls it.
        warmup: connections to open at startup, so the first requests skip TCP+TLS
            set-up. A failed warm-up logs a warning and does not stop startup...
        required: ...unless the provider is required: then startup fails.
        proxy: a proxy for every request: a URL (`http://`, `https://`, `socks5://`,
            `socks5h://`, `socks4://`, `socks4a://`; credentials as user-info), the same
            URL as a `Secret`, or an `httpx.Proxy`. Shown masked everywhere. It applies
            to the named transports; a transport given as an object (a mock in tests)
            is used as it is.
        trust_env: as in httpx: without `proxy`, read `HTTP_PROXY`, `HTTPS_PROXY`,
            `ALL_PROXY` and `NO_PROXY`, and `SSL_CERT_FILE` / `SSL_CERT_DIR`.
        dns_ttl: seconds a host's DNS answer is shared by new connections (httpool
            transport); 0 resolves for every connection.
        retry: `True` or an `httpool.Retry(...)`: retry 429/503/529 answers (and
            500/502/504 of idempotent requests) with jittered backoff, honouring
            `Retry-After`, within a retry budget. Off by default.
        max_concurrency: requests in flight at most for the provider, served first
            come, first served within the pool timeout. Off by default.
        rate_limit: `"500/minute"` or an `httpool.RateLimit(...)` (shared through
            Redis): requests admitted per moving window; callers wait up to the pool
            timeout. Off by default.
        breaker: `True` or an `httpool.Breaker(...)`: fail at once while the provider
            is down (connect errors, timeouts, 5xx). Off by default.
    """

    name: str
    _: dataclasses.KW_ONLY
    base_url: str = ""
    headers: Mapping[str, str | Secret] = dataclasses.field(default_factory=dict)
    auth: AuthSpec = None
    # httpx2's Timeout and Limits are taken too, and kept as httpx's with the same values.
    timeout: httpx.Timeout | httpx2.Timeout = dataclasses.field(
        default_factory=lambda: DEFAULT_TIMEOUT
    )
    limits: httpx.Limits | httpx2.Limits = dataclasses.field(default_factory=lambda: DEFAULT_LIMITS)
    http2: bool = True
    follow_redirects: bool = False
    verify: ssl.SSLContext | str | bool = True
    event_hooks: EventHooks | None = None
    transport: TransportSpec = "httpool"
    max_lifetime: float | None = None
    retry_post: bool = False
    allowed_origins: Sequence[str] = ()
    health_path: str | None = None
    warmup: int = 0
    required: bool = False
    proxy: str | Secret | httpx.Proxy | None = None
    trust_env: bool = True
    dns_ttl: float = 10.0
    retry: bool | Retry | None = None
    max_concurrency: int | None = None
    rate_limit: str | RateLimit | None = None
    breaker: bool | Breaker | None = None

    def __post_init__(self) -> None:
        for field, value in validate_provider(self).items():
            object.__setattr__(self, field, value)
        _warn_short_keepalive(self)
        for field, value in validate_policy(self).items():
            object.__setattr__(self, field, value)

    def with_overrides(self, **overrides: Any) -> Provider:
        """A copy with CodeWeaver-style flat overrides (`read_timeout=90`, `http2=False`...)."""
        unknown = sorted(set(overrides) - OVERRIDES)
        if unknown:
            msg = (
                f"unknown override(s) for provider {self.name!r}: {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(OVERRIDES))}"
            )
            raise TypeError(msg)
        if not overrides:
            return self
        lim, tmo = self.limits, self.timeout
        limits = httpx.Limits(
            max_connections=overrides.get("max_connections", lim.max_connections),
            max_keepalive_connections=overrides.get(
                "max_keepalive_connections", lim.max_keepalive_connections
            ),
            keepalive_expiry=overrides.get("keepalive_expiry", lim.keepalive_expiry),
        )
        timeout = httpx.Timeout(
            connect=overrides.get("connect_timeout", tmo.connect),
            read=overrides.get("read_timeout", tmo.read),
            write=overrides.get("write_timeout", tmo.write),
            pool=overrides.get("pool_timeout", tmo.pool),
        )
        return dataclasses.replace(
            self, limits=limits, timeout=timeout, http2=overrides.get("http2", self.http2)
        )

    @property
    def origin(self) -> str | None:
        """`scheme://host[:port]` of `base_url`, or `None` when there is none."""
        if not self.base_url:
            return None
        return origin_of(httpx.URL(self.base_url))

    def plain_headers(self) -> dict[str, str]:
        """The headers with `Secret` values revealed, for building the client."""
        return {
            k: v.get_secret_value() if isinstance(v, Secret) else v for k, v in self.headers.items()
        }

    def __repr__(self) -> str:
        shown = [f"{self.name!r}"]
        if self.base_url:
            shown.append(f"base_url={redact_url(self.base_url)!r}")
        if self.headers:
            masked = {k: (MASK if isinstance(v, Secret) else v) for k, v in self.headers.items()}
            shown.append(f"headers={masked!r}")
        if self.auth is not None:
            shown.append(f"auth={MASK!r}")
        if self.proxy is not None:
            shown.append(f"proxy={proxy_label(self.proxy)!r}")
        for field in ("timeout", "limits", "http2", "transport"):
            value = getattr(self, field)
            if isinstance(value, str | bool | httpx.Timeout | httpx.Limits):
                shown.append(f"{field}={value!r}")
            else:
                shown.append(f"{field}=<{type(value).__name__}>")
        return f"Provider({', '.join(shown)})"

    __str__ = __repr__


#: Provider names already warned about a short `keepalive_expiry`, to warn once each.
_warned_keepalive: set[str] = set()

#: At or below this, idle connections are dropped almost at once (httpx's default is 5 s).
SHORT_KEEPALIVE: Final = 5.0


def _warn_short_keepalive(provider: Provider) -> None:
    expiry = provider.limits.keepalive_expiry
    if not isinstance(provider.transport, str) or expiry is None or expiry > SHORT_KEEPALIVE:
        return  # a transport instance or factory brings its own limits
    if provider.name in _warned_keepalive:
        return
    _warned_keepalive.add(provider.name)
    logger.warning(
        "httpool: provider %r has limits.keepalive_expiry=%ss: idle connections are "
        "dropped that soon, so calls further apart pay TCP+TLS set-up again, and 5 s is "
        "the keep-alive timeout of many servers, which races with reuse. httpx.Limits() "
        "fills unset fields with httpx's defaults (5 s); httpool.limits(...) starts from "
        "httpool's (%ss)",
        provider.name,
        expiry,
        DEFAULT_LIMITS.keepalive_expiry,
        extra={"provider": provider.name},
    )


def _count(helper: str, field: str, value: int | None, default: int | None) -> int | None:
    if value is None:
        return default
    if type(value) is not int or value < 1:
        msg = f"httpool.{helper}({field}={value!r}): expected a whole number >= 1"
        raise ConfigError(msg)
    return value


def _seconds(helper: str, field: str, value: float | None, default: float | None) -> float | None:
    if value is None:
        return default
    number: object = value  # callers may pass anything at run time
    if (
        isinstance(number, bool) or not isinstance(number, int | float) or not 0 < number < math.inf
    ):  # also refuses NaN
        msg = f"httpool.{helper}({field}={value!r}): expected a finite number of seconds > 0"
        raise ConfigError(msg)
    return float(number)


def limits(
    *,
    max_connections: int | None = None,
    max_keepalive_connections: int | None = None,
    keepalive_expiry: float | None = None,
) -> httpx.Limits:
    """httpool's `DEFAULT_LIMITS` with only the given fields changed.

    ```python
    httpool.Provider("voyage", base_url=..., limits=httpool.limits(max_connections=50))
    ```

    Unlike `httpx.Limits(max_connections=50)`, whose unset fields take httpx's defaults
    (20 kept alive, for 5 s), the other fields keep httpool's: every connection may stay
    alive (`max_keepalive_connections` follows `max_connections` unless given), for 30 s.

    Raises:
        ConfigError: naming the field, for a count that is not a whole number >= 1 or
            an expiry that is not a finite number of seconds > 0.
    """
    default = DEFAULT_LIMITS
    connections = _count("limits", "max_connections", max_connections, default.max_connections)
    kept_default = default.max_keepalive_connections if max_connections is None else connections
    kept = _count("limits", "max_keepalive_connections", max_keepalive_connections, kept_default)
    expiry = _seconds("limits", "keepalive_expiry", keepalive_expiry, default.keepalive_expiry)
    return httpx.Limits(
        max_connections=connections, max_keepalive_connections=kept, keepalive_expiry=expiry
    )


def timeout(
    *,
    connect: float | None = None,
    read: float | None = None,
    write: float | None = None,
    pool: float | None = None,
) -> httpx.Timeout:
    """httpool's `DEFAULT_TIMEOUT` with only the given fields changed, in seconds.

    ```python
    httpool.Provider("openai", base_url=..., timeout=httpool.timeout(read=90))
    ```

    Unlike `httpx.Timeout(90)`, which sets all four to 90 s, the others keep httpool's
    defaults: connect 5 s, write 10 s, pool 10 s (and read 60 s when not given). For a
    timeout without limit, pass an `httpx.Timeout` with `None` for that field.

    Raises:
        ConfigError: naming the field, for a value that is not a finite number > 0.
    """
    default = DEFAULT_TIMEOUT
    return httpx.Timeout(
        connect=_seconds("timeout", "connect", connect, default.connect),
        read=_seconds("timeout", "read", read, default.read),
        write=_seconds("timeout", "write", write, default.write),
        pool=_seconds("timeout", "pool", pool, default.pool),
    )
