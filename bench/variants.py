"""The client variants under test, each opened as ``async with open_client(...) as fetch``.

``fetch(path)`` sends ``GET base_url + path``, reads the whole body, and raises unless
the status is 200. Every variant gets the same limits (connections, keep-alive, expiry)
and the same trust store. httpool's transport is imported lazily, so the other variants
run while it is still being written.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import httpx

from .certs import client_context

__all__ = [
    "HTTP2_CAPABLE",
    "LIMITS",
    "VARIANTS",
    "Fetch",
    "httpool_transport",
    "open_client",
    "per_request_fetch",
]

Fetch = Callable[[str], Awaitable[int]]

#: Client variants in the order they run in every round.
VARIANTS: Final = ("httpool", "httpool-httpx2", "httpx", "httpx-aiohttp", "aiohttp")
#: The variants that can speak HTTP/2.
HTTP2_CAPABLE: Final = frozenset({"httpool", "httpool-httpx2", "httpx"})
#: The same limits for every variant: httpool's defaults (100 connections, all kept alive).
LIMITS: Final = httpx.Limits(
    max_connections=100, max_keepalive_connections=100, keepalive_expiry=30.0
)
TIMEOUT: Final = httpx.Timeout(30.0)


def httpool_transport(**kwargs: Any) -> httpx.AsyncBaseTransport:
    """`httpool.PoolTransport(**kwargs)`, resolved only now (it may not exist yet)."""
    import httpool

    transport: httpx.AsyncBaseTransport = httpool.PoolTransport(**kwargs)
    return transport


def _verify(ca: str | None) -> Any:
    return client_context(ca) if ca else True


def _check(response: httpx.Response) -> int:
    if response.status_code != 200:
        raise httpx.HTTPStatusError(
            f"status {response.status_code}", request=response.request, response=response
        )
    return len(response.content)


@contextlib.asynccontextmanager
async def _httpx_family(
    name: str, base_url: str, ca: str | None, http2: bool
) -> AsyncIterator[Fetch]:
    transport: httpx.AsyncBaseTransport
    if name == "httpool":
        transport = httpool_transport(verify=_verify(ca), http2=http2, limits=LIMITS)
    elif name == "httpx":
        transport = httpx.AsyncHTTPTransport(verify=_verify(ca), http2=http2, limits=LIMITS)
    else:
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(verify=_verify(ca), limits=LIMITS)
    async with httpx.AsyncClient(base_url=base_url, transport=transport, timeout=TIMEOUT) as c:

        async def fetch(path: str) -> int:
            return _check(await c.get(path))

        yield fetch


@contextlib.asynccontextmanager
async def _httpx2(base_url: str, ca: str | None, http2: bool) -> AsyncIterator[Fetch]:
    """An `httpx2.AsyncClient` on httpool's engine (its httpx2 adapter)."""
    import httpx2

    import httpool

    transport = httpool.Httpx2PoolTransport(verify=_verify(ca), http2=http2, limits=LIMITS)
    timeout = httpx2.Timeout(TIMEOUT.read)
    async with httpx2.AsyncClient(base_url=base_url, transport=transport, timeout=timeout) as c:

        async def fetch(path: str) -> int:
            response = await c.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}")
            return len(response.content)

        yield fetch


@contextlib.asynccontextmanager
async def _aiohttp(base_url: str, ca: str | None) -> AsyncIterator[Fetch]:
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=LIMITS.max_connections or 0,
        keepalive_timeout=LIMITS.keepalive_expiry or 0,
        ssl=client_context(ca) if ca else True,
    )
    timeout = aiohttp.ClientTimeout(total=TIMEOUT.read)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def fetch(path: str) -> int:
            async with session.get(path.lstrip("/")) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                return len(body)

        yield fetch


def open_client(
    name: str, base_url: str, *, ca: str | None = None, http2: bool = False
) -> contextlib.AbstractAsyncContextManager[Fetch]:
    """Open variant `name` against `base_url` (which ends with ``/``)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    if name == "aiohttp":
        return _aiohttp(base_url, ca)
    if name == "httpool-httpx2":
        return _httpx2(base_url, ca, http2)
    return _httpx_family(name, base_url, ca, http2 and name in HTTP2_CAPABLE)


def per_request_fetch(name: str, base_url: str, *, ca: str | None, http2: bool) -> Fetch:
    """A fetch that makes, uses and closes a new `httpx.AsyncClient` for every call."""

    async def fetch(path: str) -> int:
        transport: httpx.AsyncBaseTransport
        if name == "httpool":
            transport = httpool_transport(verify=_verify(ca), http2=http2, limits=LIMITS)
        else:
            transport = httpx.AsyncHTTPTransport(verify=_verify(ca), http2=http2, limits=LIMITS)
        async with httpx.AsyncClient(
            base_url=base_url, transport=transport, timeout=TIMEOUT
        ) as client:
            return _check(await client.get(path))

    return fetch
