"""The errors of a provider's policy: a limit not reached in time, a breaker that is open."""

from __future__ import annotations

import httpx

__all__ = ["CircuitOpenError", "LimitTimeout"]


class LimitTimeout(httpx.PoolTimeout):
    """A request waited its pool timeout for a provider's limit and was not admitted.

    An `httpx.PoolTimeout`, so code that handles pool exhaustion handles it too (and
    `install_error_handlers` answers 503 with `Retry-After`). `limit` is
    `"max_concurrency"`, `"rate_limit"` or `"provider_reset"` (the provider said its
    limit resets later than the request could wait).
    """

    def __init__(
        self, name: str, limit: str, waited: float, detail: str, request: httpx.Request
    ) -> None:
        self.name = name
        self.limit = limit
        self.waited = waited
        msg = (
            f"provider {name!r}: no request admitted by {limit} within {waited:.2f} s "
            f"({detail}); raise the pool timeout or the limit, or send fewer requests"
        )
        super().__init__(msg, request=request)


class CircuitOpenError(httpx.TransportError):
    """A provider's circuit breaker is open: the request failed at once, unsent.

    `retry_in` is the seconds until a trial request may go through; the error handlers
    answer 503 with that `Retry-After`.
    """

    def __init__(
        self, name: str, retry_in: float, failures: int, window: float, request: httpx.Request
    ) -> None:
        self.name = name
        self.retry_in = retry_in
        msg = (
            f"provider {name!r} is failing ({failures} connect errors, timeouts or 5xx "
            f"answers within {window:g} s): requests fail at once until a trial request in "
            f"{retry_in:.1f} s"
        )
        super().__init__(msg, request=request)
