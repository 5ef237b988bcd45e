"""Closing clients: drain what is in flight, then close everything concurrently, on time."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import httpx

from ._clients import ProviderClients
from ._secret import redact_text

__all__ = ["close_clients", "drain"]

logger = logging.getLogger("httpool")

#: Errors a close may raise because the network or the peer is gone: logged, not raised.
_EXPECTED = (httpx.HTTPError, OSError)


def _expected() -> tuple[type[BaseException], ...]:
    httpx2 = sys.modules.get("httpx2")  # loaded when an httpx2 client was made
    return _EXPECTED if httpx2 is None else (*_EXPECTED, httpx2.HTTPError)


async def drain(providers: Mapping[str, ProviderClients], seconds: float) -> None:
    """Refuse new requests, then wait up to `seconds` for those in flight."""
    gates = [p.gate for p in providers.values()]
    for gate in gates:
        gate.refusing = True
    with anyio.move_on_after(seconds):
        while any(g.busy for g in gates):  # noqa: ASYNC110 - a short poll at shutdown
            await anyio.sleep(0.01)
    busy = {g.name: g.busy for g in gates if g.busy}
    if busy:
        logger.warning(
            "httpool shutdown: %d request(s) still in flight after %.1f s; closing them",
            sum(busy.values()),
            seconds,
            extra={"providers": busy},
        )


async def close_clients(providers: Mapping[str, ProviderClients], seconds: float) -> None:
    """Close every client of every provider at once, each within `seconds`.

    Expected network errors are logged at warning with the provider's name; any other
    error is raised after all were closed, together in an `ExceptionGroup`.
    """
    errors: list[Exception] = []
    expected = _expected()

    async def close(name: str, client: Any) -> None:
        with anyio.move_on_after(seconds) as scope:
            try:
                if hasattr(client, "aclose"):
                    await client.aclose()
                else:
                    await anyio.to_thread.run_sync(client.close, abandon_on_cancel=True)
            except expected as exc:
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
            for name, provider in providers.items():
                provider.gate.owned = False  # the pool closes its own clients
                for client in provider.clients.values():
                    tg.start_soon(close, name, client)
    if errors:
        msg = f"closing {len(errors)} httpool client(s) failed"
        raise ExceptionGroup(msg, errors)
