"""Warm-up: open a provider's connections at startup, before the first request needs them."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import anyio
import httpx

from ._config import Provider
from ._secret import redact_text

__all__ = ["warm_up"]

logger = logging.getLogger("httpool")


async def _warm_one(provider: Provider, client: httpx.AsyncClient) -> None:
    """Open `provider.warmup` connections by sending that many HEAD requests at once.

    Any answer, even a 404, leaves a connection with TCP and TLS done in the pool; with
    HTTP/2 the requests share one connection, which is all HTTP/2 needs.
    """
    path = provider.health_path or ""
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(provider.warmup):
            tg.start_soon(client.head, path)
    logger.debug(
        "httpool warmed up %r: %d connection(s) in %.0f ms",
        provider.name,
        provider.warmup,
        (time.perf_counter() - started) * 1000,
        extra={"provider": provider.name},
    )


async def warm_up(
    providers: Mapping[str, Provider], clients: Mapping[str, httpx.AsyncClient]
) -> None:
    """Warm every provider that asks for it, concurrently.

    A failure is logged at warning and startup goes on, unless the provider is
    `required`: then the first such failure is raised, with a note naming the provider.
    """
    failures: list[BaseException] = []

    async def guarded(provider: Provider) -> None:
        try:
            await _warm_one(provider, clients[provider.name])
        except Exception as exc:  # noqa: BLE001 - reported below, by provider
            error = exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc
            if provider.required:
                error.add_note(
                    f"httpool provider {provider.name!r} is required=True and its warm-up "
                    "failed; check its base_url and the network, or set required=False"
                )
                failures.append(error)
                return
            logger.warning(
                "httpool warm-up of %r failed (%s: %s); starting anyway",
                provider.name,
                type(error).__name__,
                redact_text(str(error)),
                extra={"provider": provider.name},
            )

    async with anyio.create_task_group() as tg:
        for provider in providers.values():
            if provider.warmup and provider.base_url:
                tg.start_soon(guarded, provider)
    if failures:
        raise failures[0]
