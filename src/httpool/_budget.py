"""Connection budgets for deployments with several worker processes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import httpx

from ._errors import ConfigError

__all__ = ["per_worker", "unsplit_workers", "warn_unsplit_workers"]

logger = logging.getLogger("httpool")


def per_worker(limits: httpx.Limits, workers: int | None = None) -> httpx.Limits:
    """`limits` meant for the whole deployment, divided among its worker processes.

    ```python
    limits = httpool.per_worker(httpool.limits(max_connections=400))
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


#: Servers whose command line says how many worker processes they start.
_SERVERS: Final = ("gunicorn", "uvicorn", "hypercorn", "granian")
_warned_workers: list[bool] = []


def unsplit_workers(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """What is wrong when a server started N > 1 workers and `WEB_CONCURRENCY` is not N.

    The worker count is read from the server's command line (`gunicorn -w 3 ...`,
    `uvicorn --workers 3 ...`, `hypercorn -w 3 ...`, `granian --workers 3 ...`), which
    each worker process inherits; a count set in a config file is not seen. `None`
    when nothing is wrong or nothing can be told.
    """
    args = list(sys.argv if argv is None else argv)
    env = os.environ if environ is None else environ
    if not args:
        return None
    path = Path(args[0])
    program = path.parent.name if path.name == "__main__.py" else path.name
    server = next((s for s in _SERVERS if program.startswith(s)), None)
    if server is None:
        return None
    workers = 0
    for i, arg in enumerate(args[1:], start=1):
        if arg in ("-w", "--workers") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--workers="):
            value = arg.removeprefix("--workers=")
        elif arg.startswith("-w") and not arg.startswith("--"):
            value = arg[2:]
        else:
            continue
        workers = int(value) if value.isdigit() else workers
    declared = env.get("WEB_CONCURRENCY", "").strip()
    if workers < 2 or declared == str(workers):
        return None
    said = f"WEB_CONCURRENCY={declared}" if declared else "WEB_CONCURRENCY is not set"
    return (
        f"httpool: {server} started {workers} worker processes but {said}: each worker "
        f"has its own pool, so up to {workers} x max_connections per provider are open in "
        f"all, and httpool.per_worker() and HTTPOOL_<NAME>_MAX_CONNECTIONS_TOTAL divide by "
        f"the wrong count. Set WEB_CONCURRENCY={workers} in the server's environment"
    )


def warn_unsplit_workers() -> None:
    """Log `unsplit_workers()`'s warning, once per process."""
    if _warned_workers:
        return
    _warned_workers.append(True)
    problem = unsplit_workers()
    if problem is not None:
        logger.warning("%s", problem)
