"""Building a provider's httpx clients: the transport, the credentials, the origin guard."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from contextvars import ContextVar
from typing import Any

import anyio
import httpx

from ._config import Provider, origin_of
from ._errors import OriginNotAllowedError, PoolClosedError
from ._policy import wrap_policy
from ._secret import Secret

__all__ = [
    "ProviderClient",
    "SyncProviderClient",
    "build_async_client",
    "build_sync_client",
    "request_streams",
]

logger = logging.getLogger("httpool")
_warned_unverified: set[str] = set()
_said_trio: set[str] = set()


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


#: The exit stack of the request being handled, set by the dependency: a streamed
#: response opened during the request gets a clean-up on it (run after the response).
request_streams: ContextVar[AsyncExitStack | None] = ContextVar(
    "httpool_request_streams", default=None
)
_URL_CACHE_SIZE = 256  # merged URLs kept per client, for string URLs


async def _close_left_open(response: httpx.Response) -> None:
    """Close a streamed response that the request which opened it left open."""
    if not response.is_closed:
        with anyio.CancelScope(shield=True):
            await response.aclose()


class _Cookies(httpx.Cookies):
    """httpx's cookie store, which skips the cookie parsing when a response sets none."""

    def extract_cookies(self, response: httpx.Response) -> None:
        for name, _ in response.headers.raw:
            if name.lower().startswith(b"set-cookie"):  # Set-Cookie or Set-Cookie2
                super().extract_cookies(response)
                return


class _CountedStream(httpx.AsyncByteStream):
    """A response body that tells its client when it is closed (for draining)."""

    def __init__(self, stream: httpx.AsyncByteStream, client: ProviderClient) -> None:
        self._stream, self._client, self._closed = stream, client, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.active -= 1
        await self._stream.aclose()


class ProviderClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` that keeps its provider's credentials at their origin.

    It also counts the requests in flight (for draining at shutdown), refuses new ones
    once the pool is closing, and records streamed responses so the request that opened
    them can close what it left open.
    """

    def __init__(self, provider: Provider, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provider_name = provider.name
        self.active = 0
        self.refuse_new = False
        self._guard = _OriginGuard(provider)
        self._cookies = _Cookies(self._cookies.jar)
        self._urls: dict[str, httpx.URL] = {}
        self._urls_base = self._base_url

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._cookies = _Cookies(cookies)

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        """httpx's merge with the base URL, remembered for string URLs (parsing costs)."""
        if not isinstance(url, str):
            return super()._merge_url(url)
        if self._urls_base is not self._base_url:  # the base URL was changed
            self._urls.clear()
            self._urls_base = self._base_url
        merged = self._urls.get(url)
        if merged is None:
            merged = super()._merge_url(url)
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[url] = merged
        return merged

    async def send(
        self, request: httpx.Request, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        if self.refuse_new:
            raise PoolClosedError(self.provider_name, "closing")
        self._guard.check(request.url)
        request.extensions["httpool.provider"] = self.provider_name
        debug = logger.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        self.active += 1
        try:
            response = await super().send(request, stream=stream, **kwargs)
        except BaseException:
            self.active -= 1
            raise
        if debug:
            self._log(request, response, started)
        if not stream or response.is_closed:  # a mock may hand back a closed response
            self.active -= 1
            return response
        response.stream = _CountedStream(response.stream, self)  # type: ignore[arg-type]
        stack = request_streams.get()
        if stack is not None:
            stack.push_async_callback(_close_left_open, response)
        return response

    def _redirect_headers(
        self, request: httpx.Request, url: httpx.URL, method: str
    ) -> httpx.Headers:
        headers = super()._redirect_headers(request, url, method)
        return self._guard.redirect_headers(headers, url)

    def __repr__(self) -> str:
        return f"<httpool client {self.provider_name!r}>"

    def _log(self, request: httpx.Request, response: httpx.Response, started: float) -> None:
        """One DEBUG record per request, with structured fields and no URL query."""
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        origin = origin_of(request.url)
        logger.debug(
            "httpool %s %s %s%s -> %d in %.1f ms",
            self.provider_name,
            request.method,
            origin,
            request.url.path,
            response.status_code,
            duration_ms,
            extra={
                "provider": self.provider_name,
                "origin": origin,
                "method": request.method,
                "status": response.status_code,
                "duration_ms": duration_ms,
            },
        )


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
        return spec()
    from ._proxy_transports import check_support, routed

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
        options["verify"] = _verify(provider)
        return routed(routes, lambda p: httpx.AsyncHTTPTransport(**options, proxy=_httpx(p)))
    if spec == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        check_support(routes, "aiohttp", where)
        options["verify"] = _verify(provider)
        # aiohttp speaks HTTP/1.1 only; asked for HTTP/2 (httpool's default), it logs a
        # warning on the root logger for every client. `http2` means "offer it": no offer.
        options["http2"] = False
        return routed(
            routes,
            lambda p: AiohttpTransport(**options, proxy=_httpx(p, auth_header=True)),
            auth_on_plain=True,
        )
    from ._transport import PoolTransport

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
    from ._errors import ConfigError
    from ._proxy import Routes

    try:
        return Routes.build(provider.proxy, provider.trust_env)
    except (TypeError, ValueError) as exc:  # a bad proxy in the environment
        msg = f"{where}: the proxy from the environment is unusable: {exc}"
        raise ConfigError(msg) from None


def _verify(provider: Provider) -> Any:
    """`verify` for httpx's and aiohttp's transports: `"system"` becomes a truststore context.

    httpool's own transport takes `"system"` as it is and offers its ALPN protocols.
    """
    if provider.verify == "system":
        from ._truststore import system_context

        return system_context()
    return provider.verify


def _httpx(proxy: Any, auth_header: bool = False) -> httpx.Proxy | None:
    return None if proxy is None else proxy.as_httpx(auth_header=auth_header)


def build_async_client(
    provider: Provider,
) -> tuple[ProviderClient, httpx.AsyncBaseTransport]:
    """A new `httpx.AsyncClient` for `provider`, and its transport (for stats)."""
    transport = wrap_policy(provider, make_transport(provider))
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
    from ._proxy_transports import check_support, routed_sync

    where = f"Provider({provider.name!r})"
    routes = _routes(provider, where)
    check_support(routes, "sync", where)
    transport = routed_sync(
        routes,
        lambda p: httpx.HTTPTransport(
            verify=_verify(provider),
            http2=provider.http2,
            limits=provider.limits,
            trust_env=provider.trust_env,
            proxy=_httpx(p),
        ),
    )
    return SyncProviderClient(provider, transport=transport, **_common(provider))
