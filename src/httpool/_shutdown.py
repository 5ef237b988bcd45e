"""Closing clients: drain what is in flight, then close everything concurrently, on time."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio
import httpx

from ._clients import ProviderClient
from ._secret import redact_text

__all__ = ["close_clients", "drain"]

logger = logging.getLogger("httpool")

#: Errors a close may raise because the network or the peer is gone: logged, not raised.
_EXPECTED = (httpx.HTTPError, OSError)


async def drain(clients: Mapping[str, httpx.AsyncClient], seconds: float) -> None:
    """Refuse new requests, then wait up to `seconds` for those in flight."""
    counted = [c for c in clients.values() if isinstance(c, ProviderClient)]
    for client in counted:
        client.refuse_new = True
    with anyio.move_on_after(seconds):
        while any(c.active for c in counted):  # noqa: ASYNC110 - a short poll at shutdown
            await anyio.sleep(0.01)
    busy = {c.provider_name: c.active for c in counted if c.active}
    if busy:
        logger.warning(
            "httpool shutdown: %d request(s) still in flight after %.1f s; closing them",
            sum(busy.values()),
            seconds,
            extra={"providers": busy},
        )


async def close_clients(
    clients: Mapping[str, httpx.AsyncClient],
    sync_clients: Mapping[str, httpx.Client],
    seconds: float,
) -> None:
    """Close every client at once, each within `seconds`.

    Expected network errors are logged at warning with the provider's name; any other
    error is raised after all were closed, together in an `ExceptionGroup`.
    """
    errors: list[Exception] = []

    async def close(name: str, client: httpx.AsyncClient | httpx.Client) -> None:
        with anyio.move_on_after(seconds) as scope:
            try:
                if isinstance(client, httpx.AsyncClient):
                    await client.aclose()
                else:
                    await anyio.to_thread.run_sync(client.close, abandon_on_cancel=True)
            except _EXPECTED as exc:
                logger.warning(
                    "closing httpool client %r failed: %s: %s",
                    name,
                    type(exc).__name__,
                    redact_text(str(exc)),
                    extra={"provider": name},
                )
            except Exception as exc:  # noqa: BLE001 - collected and raised together
                exc.add_note(f"while closing httpool provider {name!r}")
                errors.append(exc)
        if scope.cancelled_caught:
            logger.warning(
                "closing httpool client %r took over %.1f s; abandoned",
                name,
                seconds,
                extra={"provider": name},
            )

    with anyio.CancelScope(shield=True):
        async with anyio.create_task_group() as tg:
            for name, client in clients.items():
                tg.start_soon(close, name, client)
            for name, sync_client in sync_clients.items():
                tg.start_soon(close, name, sync_client)
    if errors:
        msg = f"closing {len(errors)} httpool client(s) failed"
        raise ExceptionGroup(msg, errors)
