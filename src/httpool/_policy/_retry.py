"""`Retry`: which answers of a provider are tried again, how long to wait, and the budget."""

from __future__ import annotations

import collections
import dataclasses
import email.utils
import math
import random
import time
from typing import Final

import httpx

from .._errors import ConfigError

__all__ = ["IDEMPOTENT", "Retry", "RetryBudget", "parse_retry_after", "retry_reason"]

#: Methods that may be sent twice without changing more than once (RFC 9110 9.2.2).
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """How a provider's answers are retried: `Provider(retry=httpool.Retry(...))`.

    `retry=True` is `Retry()` with the defaults below, which follow the OpenAI and
    Anthropic SDKs (two retries, 0.5 s doubling to 8 s) and Envoy's and Finagle's retry
    budgets.

    Arguments:
        attempts: tries in all, the first included (3: the SDKs' two retries).
        statuses: answers retried for any method, because the server says it did not
            process the request: 429 (rate limited), 503 (unavailable), 529 (Anthropic's
            "overloaded").
        idempotent_statuses: answers retried only when the request may run twice: an
            idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE), a request with an
            `Idempotency-Key` header, or `retry_post=True`. A 500/502/504 may come after
            the server acted on the request.
        retry_post: treat every method as idempotent for `idempotent_statuses`.
        connect_errors: retry a request whose connection could not be made (nothing
            was sent, so any method is safe).
        backoff_initial: seconds of the first backoff ceiling; each retry doubles it.
        backoff_max: the largest backoff ceiling, in seconds. The wait is drawn
            uniformly between 0 and the ceiling ("full jitter"), so callers that failed
            together do not come back together.
        max_retry_after: a `Retry-After` (or `retry-after-ms`) longer than this many
            seconds is not waited for: the answer is returned at once (60 s: a caller
            rarely waits longer; the SDKs ignore longer values too).
        timeout: seconds a request may take in all, waits included; a retry that would
            end its wait later is not made. `None`: the request's read timeout.
        budget_ratio: retries may be at most this share of the requests of the last
            `budget_window` seconds (0.2, Envoy's and Finagle's default), so an outage
            adds at most 20 % load, not 200 %...
        budget_min: ...plus this many retries per window whatever the traffic, so a
            quiet provider can still retry its few requests.
        budget_window: seconds over which requests and retries are counted.
    """

    attempts: int = 3
    statuses: frozenset[int] = frozenset({429, 503, 529})
    idempotent_statuses: frozenset[int] = frozenset({500, 502, 504})
    retry_post: bool = False
    connect_errors: bool = True
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 60.0
    timeout: float | None = None
    budget_ratio: float = 0.2
    budget_min: int = 10
    budget_window: float = 10.0

    def __post_init__(self) -> None:
        if type(self.attempts) is not int or self.attempts < 1:
            msg = f"Retry(attempts={self.attempts!r}): expected a whole number >= 1"
            raise ConfigError(msg)
        for name in ("statuses", "idempotent_statuses"):
            codes = frozenset(getattr(self, name))
            if not all(type(c) is int and 100 <= c <= 599 for c in codes):
                msg = f"Retry({name}={sorted(codes)!r}): expected HTTP status codes 100-599"
                raise ConfigError(msg)
            object.__setattr__(self, name, codes)
        for name in ("backoff_initial", "backoff_max", "max_retry_after", "budget_window"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                msg = f"Retry({name}={value!r}): expected seconds >= 0"
                raise ConfigError(msg)
        if self.timeout is not None and not 0 < self.timeout < math.inf:
            msg = f"Retry(timeout={self.timeout!r}): expected seconds > 0, or None"
            raise ConfigError(msg)
        if not 0 <= self.budget_ratio <= 1:
            msg = f"Retry(budget_ratio={self.budget_ratio!r}): expected a share from 0 to 1"
            raise ConfigError(msg)
        if type(self.budget_min) is not int or self.budget_min < 0:
            msg = f"Retry(budget_min={self.budget_min!r}): expected a whole number >= 0"
            raise ConfigError(msg)

    def backoff(self, retry: int) -> float:
        """The wait before retry number `retry` (1 for the first): full jitter."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (retry - 1))
        return random.uniform(0, ceiling)  # noqa: S311  jitter, not a secret


def retry_reason(retry: Retry, request: httpx.Request, response: httpx.Response) -> str | None:
    """Why `response` may be retried (the reason counted in stats), or `None`."""
    should = response.headers.get("x-should-retry", "").strip().lower()
    if should == "false":
        return None
    code = response.status_code
    if code in retry.statuses:
        return str(code)
    if code in retry.idempotent_statuses and (
        retry.retry_post or request.method in IDEMPOTENT or "idempotency-key" in request.headers
    ):
        return "5xx"
    if should == "true":
        return "should_retry"
    return None


def parse_retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds the server asks to wait: `retry-after-ms`, else `Retry-After` (seconds or
    an HTTP date); `None` when neither is there or readable."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if 0 <= ms < math.inf:
            return ms / 1000
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    return seconds if 0 <= seconds < math.inf else None


class RetryBudget:
    """Retries allowed as a share of recent requests (Envoy's and Finagle's budget)."""

    __slots__ = ("_min", "_ratio", "_requests", "_retries", "_window")

    def __init__(self, ratio: float, minimum: int, window: float) -> None:
        self._ratio, self._min, self._window = ratio, minimum, window
        self._requests: collections.deque[float] = collections.deque()
        self._retries: collections.deque[float] = collections.deque()

    def _trim(self, now: float) -> None:
        start = now - self._window
        for times in (self._requests, self._retries):
            while times and times[0] < start:
                times.popleft()

    def request(self) -> None:
        """Count a new request (not a retry)."""
        now = time.monotonic()
        self._trim(now)
        self._requests.append(now)

    def spend(self) -> bool:
        """Take one retry from the budget; `False` when it is spent."""
        now = time.monotonic()
        self._trim(now)
        if len(self._retries) >= self._min + self._ratio * len(self._requests):
            return False
        self._retries.append(now)
        return True
