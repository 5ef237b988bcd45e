"""Connection budgets for deployments with several worker processes."""

from __future__ import annotations

import logging
import os

import httpx

from ._errors import ConfigError

__all__ = ["per_worker"]

logger = logging.getLogger("httpool")


def per_worker(limits: httpx.Limits, workers: int | None = None) -> httpx.Limits:
    """`limits` meant for the whole deployment, divided among its worker processes.

    ```python
    limits = httpool.per_worker(httpx.Limits(max_connections=400, max_keepalive_connections=400))
    ```

    `max_connections` and `max_keepalive_connections` are divided by `workers`, by
    default `WEB_CONCURRENCY` (the worker count that uvicorn, gunicorn and most hosts
    use; 1 when unset), rounding down, at least 1 each. `None` (no limit) stays `None`.
    """
    count = _web_concurrency() if workers is None else workers
    if type(count) is not int or count < 1:
        msg = f"per_worker(workers={count!r}): expected a whole number >= 1"
        raise ConfigError(msg)

    def share(total: int | None) -> int | None:
        if total is None:
            return None
        if total < count:
            logger.warning(
                "httpool: a budget of %d connection(s) cannot be split among %d workers; "
                "each gets 1, so %d may be open in all",
                total,
                count,
                count,
            )
        return max(1, total // count)

    return httpx.Limits(
        max_connections=share(limits.max_connections),
        max_keepalive_connections=share(limits.max_keepalive_connections),
        keepalive_expiry=limits.keepalive_expiry,
    )


def _web_concurrency() -> int:
    raw = os.environ.get("WEB_CONCURRENCY", "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        msg = f"WEB_CONCURRENCY={raw!r}: expected a whole number >= 1 (the worker processes)"
        raise ConfigError(msg)
    return int(raw)
