"""`PolicyTransport`: a provider's retries, limits and breaker around any httpx transport.

It wraps whatever transport the provider has (httpool's `PoolTransport`, httpx's,
aiohttp's) through the public `httpx.AsyncBaseTransport` interface, so it works the
same under every client made on it. Each request goes through, in order: the breaker
(fail at once when open), the provider's own "blocked until" (from its rate-limit
headers), the concurrency limit, the rate limit, then the wrapped transport; its answer
is counted and may be retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
import anyio.lowlevel
import httpx

from ._breaker import Breaker, CircuitBreaker
from ._errors import CircuitOpenError, LimitTimeout
from ._ratelimit import RateLimit, RateLimiter, StorageDown
from ._retry import Retry, RetryBudget, parse_retry_after, retry_reason
from ._signals import blocked_for

__all__ = ["PolicyTransport"]

logger = logging.getLogger("httpool")

#: Transport failures that count against the breaker: the provider did not answer.
_BREAKER_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout)
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
COST_EXTENSION = "httpool.cost"


class _Permit(httpx.AsyncByteStream):
    """A response body that gives its concurrency slot back when it is closed."""

    __slots__ = ("_release", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, release: Any) -> None:
        self._stream, self._release = stream, release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        release, self._release = self._release, None
        try:
            await self._stream.aclose()
        finally:
            if release is not None:
                release()


class PolicyTransport(httpx.AsyncBaseTransport):
    """Retries, a concurrency limit, a rate limit and a circuit breaker for one provider.

    Arguments:
        inner: the transport that sends the requests.
        name: the provider's name, for errors, logs and stats.
        retry: the retry policy, or `None` for none.
        max_concurrency: requests in flight at most (a streamed response counts until
            it is closed), or `None`.
        rate_limit: admitted requests per window, or `None`.
        breaker: the circuit breaker's settings, or `None` for none.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        name: str,
        *,
        retry: Retry | None = None,
        max_concurrency: int | None = None,
        rate_limit: RateLimit | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.inner = inner
        self.name = name
        self._retry = retry
        self._budget = (
            RetryBudget(retry.budget_ratio, retry.budget_min, retry.budget_window)
            if retry is not None
            else None
        )
        self._max_concurrency = max_concurrency
        self._slots = anyio.Semaphore(max_concurrency) if max_concurrency else None
        self._limiter = RateLimiter(rate_limit, name) if rate_limit is not None else None
        self._breaker = CircuitBreaker(breaker) if breaker is not None else None
        #: No breaker and no concurrency limit: a request the rate limit admits at once
        #: skips the rest of the way in (`_attempt`).
        self._only_a_rate_limit = self._breaker is None and self._slots is None
        self._blocked_until = 0.0  # without a rate limit, the provider's block lives here
        self._blocked_reason: str | None = None
        self._answers: dict[str, int] = {}
        self._retries: dict[str, int] = {}
        self._not_retried: dict[str, int] = {}
        self._waited = {"concurrency": 0.0, "rate_limit": 0.0, "provider_reset": 0.0}
        self._concurrency_waiting = 0
        self._in_flight = 0
        #: The event loop this state lives on, and its thread (see `remember_loop`).
        self.loop_token: Any = None
        self.loop_thread: int | None = None
        self.remember_loop()

    # -- requests ------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the limits, retrying answers the policy allows."""
        if self.loop_token is None:
            self.remember_loop()
        retry = self._retry
        if retry is None:
            limiter = self._limiter
            if self._only_a_rate_limit and limiter is not None:
                return await self._rate_limited(request, limiter)
            return await self._attempt(request)
        deadline = self.start_retries(request)
        replayable = isinstance(request.stream, httpx.ByteStream)
        attempt = 1
        while True:
            try:
                response = await self._attempt(request)
            except _CONNECT_ERRORS:
                wait = self.connect_wait(attempt, deadline)
                if wait is None:
                    raise
                await anyio.sleep(wait)
                attempt += 1
                continue
            wait = self.answer_wait(request, response, attempt, deadline, replayable=replayable)
            if wait is None:
                return response
            await response.aclose()
            await anyio.sleep(wait)
            attempt += 1

    # -- the pieces of a request, shared with the sync clients' `SyncPolicyTransport` --

    @property
    def retry(self) -> Retry | None:
        """The retry policy, if any."""
        return self._retry

    def remember_loop(self) -> None:
        """Note the running event loop: the sync clients reach this state on it."""
        try:
            self.loop_token = anyio.lowlevel.current_token()
        except RuntimeError:  # no event loop in this thread
            return
        self.loop_thread = threading.get_ident()

    def start_retries(self, request: httpx.Request) -> float | None:
        """Count the request in the retry budget; the `time.monotonic()` after which no
        retry starts (`None`: no deadline)."""
        retry = self._retry
        assert retry is not None
        assert self._budget is not None
        self._budget.request()
        timeouts = request.extensions.get("timeout") or {}
        total = retry.timeout if retry.timeout is not None else timeouts.get("read")
        return None if total is None else time.monotonic() + total

    def connect_wait(self, attempt: int, deadline: float | None) -> float | None:
        """The seconds to wait before retrying attempt `attempt` that could not connect,
        or `None` to give up (counted)."""
        retry = self._retry
        assert retry is not None
        if not (retry.connect_errors and attempt < retry.attempts):
            return None
        wait = retry.backoff(attempt)
        return wait if self._may_retry(deadline, wait, "connect") else None

    def answer_wait(
        self,
        request: httpx.Request,
        response: httpx.Response,
        attempt: int,
        deadline: float | None,
        *,
        replayable: bool,
    ) -> float | None:
        """The seconds to wait before retrying `response`, or `None` to return it
        (counted). `replayable`: the request's body can be sent again."""
        retry = self._retry
        assert retry is not None
        if attempt >= retry.attempts:
            return None
        reason = retry_reason(retry, request, response)
        if reason is None:
            return None
        if not replayable:
            self._count(self._not_retried, "streamed_body")
            return None
        wait_for = parse_retry_after(response.headers)
        if wait_for is not None and wait_for > retry.max_retry_after:
            self._count(self._not_retried, "retry_after_too_long")
            return None
        wait = retry.backoff(attempt) if wait_for is None else wait_for
        return wait if self._may_retry(deadline, wait, reason) else None

    def enter_breaker(self, request: httpx.Request) -> bool:
        """Raise `CircuitOpenError` while the circuit is open; whether this request is
        the trial that decides whether to close it."""
        breaker = self._breaker
        if breaker is None:
            return False
        admitted = breaker.admit()
        if admitted is False:
            config = breaker.config
            raise CircuitOpenError(
                self.name, breaker.retry_in(), config.failures, config.window, request
            )
        return admitted is None

    def not_admitted(self, trial: bool) -> None:
        """The request ended before it was sent (a limit's wait failed or was cancelled)."""
        if trial and self._breaker is not None:
            self._breaker.release_trial()

    def send_failed(self, trial: bool, counts: bool, release: Any) -> None:
        """The wrapped transport raised; `counts`: the error is one the breaker counts."""
        breaker = self._breaker
        if breaker is not None:
            if counts:
                breaker.record(ok=False, trial=trial)
            elif trial:
                breaker.release_trial()
        if release is not None:
            release()

    async def answered(self, response: httpx.Response, trial: bool) -> None:
        """Count the answer, tell the breaker, and heed what the answer says of the
        provider's rate limit."""
        if self._breaker is not None:
            self._breaker.record(ok=response.status_code < 500, trial=trial)
        said = self._read_answer(response)
        if said is not None:
            await self._block(time.time() + said[0], said[1])

    def _read_answer(self, response: httpx.Response) -> tuple[float, str] | None:
        """Count the answer; for how long and by which header the provider said it
        refuses new requests (`None`: it did not)."""
        status = response.status_code
        answers = self._answers
        kind = _STATUS_CLASS.get(status // 100) or f"{status // 100}xx"
        answers[kind] = answers.get(kind, 0) + 1
        if status == 429 or status == 503:  # noqa: PLR1714 (faster than a set, per answer)
            self._count(answers, str(status))
        return blocked_for(response)

    async def enter(
        self, request: httpx.Request, *, first: bool = False
    ) -> tuple[bool, Any, float | None]:
        """A sync client's way in, in one call on the loop: the retry budget (on the
        `first` attempt), the breaker and the limits' waits. Returns whether the request
        is the breaker's trial, the concurrency slot's release function (or `None`) and
        the retry deadline (see `start_retries`; `None` after the first attempt)."""
        deadline = self.start_retries(request) if first and self._retry is not None else None
        trial, release = await self._enter(request)
        return trial, release, deadline

    async def _enter(self, request: httpx.Request) -> tuple[bool, Any]:
        """The breaker, then the limits' waits: whether the request is the breaker's
        trial, and the concurrency slot's release function (or `None`)."""
        trial = self.enter_breaker(request)
        try:
            release = await self.admit(request)
        except BaseException:
            self.not_admitted(trial)
            raise
        return trial, release

    async def finish(
        self,
        request: httpx.Request,
        response: httpx.Response,
        trial: bool,
        attempt: int,
        deadline: float | None,
        *,
        replayable: bool,
    ) -> float | None:
        """A sync client's answer, in one call on the loop: counted and read (see
        `answered`); the seconds to wait before retrying it, or `None` to return it."""
        await self.answered(response, trial)
        if self._retry is None:
            return None
        return self.answer_wait(request, response, attempt, deadline, replayable=replayable)

    def _may_retry(self, deadline: float | None, wait: float, reason: str) -> bool:
        """Whether the budget and the deadline allow a retry after `wait` seconds; counted."""
        if deadline is not None and time.monotonic() + wait > deadline:
            self._count(self._not_retried, "deadline")
            return False
        if self._breaker is not None and self._breaker.state != "closed":
            self._count(self._not_retried, "breaker_open")
            return False
        assert self._budget is not None
        if not self._budget.spend():
            self._count(self._not_retried, "budget")
            return False
        self._count(self._retries, reason)
        logger.debug(
            "httpool provider %r: retrying (%s) in %.2f s",
            self.name,
            reason,
            wait,
            extra={"provider": self.name, "reason": reason},
        )
        return True

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        """One try: the breaker, the waits for the limits, then the wrapped transport."""
        limiter = self._limiter
        if self._only_a_rate_limit and limiter is not None:
            return await self._rate_limited(request, limiter)
        return await self._full_attempt(request)

    async def _rate_limited(self, request: httpx.Request, limiter: RateLimiter) -> httpx.Response:
        """One try under a rate limit alone (no breaker, no concurrency limit): a request
        it admits at once, the common case, goes straight on."""
        cost = _cost(request)
        if not (cost and limiter.admit_now(cost)):
            return await self._full_attempt(request)
        if limiter.ahead_due():
            await limiter.take_ahead()
        response = await self.inner.handle_async_request(request)
        said = self._read_answer(response)
        if said is not None:
            await self._block(time.time() + said[0], said[1])
        return response

    async def _full_attempt(self, request: httpx.Request) -> httpx.Response:
        """One try, the whole way: the breaker, the waits for the limits, the transport."""
        trial, release = await self._enter(request)
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException as exc:
            self.send_failed(trial, isinstance(exc, _BREAKER_ERRORS), release)
            raise
        await self.answered(response, trial)
        if release is not None:
            if response.is_closed:  # read already (a mock transport's answer): done
                release()
            else:
                response.stream = _Permit(response.stream, release)  # type: ignore[arg-type]
        return response

    async def admit(self, request: httpx.Request) -> Any:
        """Wait for a concurrency slot, then the provider's reset and the rate limit (in
        the rate limit's turn, so that the requests that waited for the reset do not all
        go at once), within the request's pool timeout; the slot's release function (or
        `None`)."""
        timeouts = request.extensions.get("timeout") or {}
        pool_timeout = timeouts.get("pool")
        started = time.monotonic()
        deadline = None if pool_timeout is None else started + pool_timeout
        release = None
        slots = self._slots
        if slots is not None:
            if slots.value > 0:  # a free slot: no waiting, no timer
                await slots.acquire()
            else:
                waited_from = time.monotonic()
                self._concurrency_waiting += 1
                try:
                    with anyio.fail_after(_left(deadline)):
                        await slots.acquire()
                except TimeoutError:
                    raise LimitTimeout(
                        self.name,
                        "max_concurrency",
                        time.monotonic() - started,
                        f"max_concurrency={self._max_concurrency}",
                        request,
                    ) from None
                finally:
                    self._concurrency_waiting -= 1
                    self._waited["concurrency"] += time.monotonic() - waited_from
            self._in_flight += 1
            release = self._release
        limiter = self._limiter
        try:
            cost = _cost(request) if limiter is not None else 0
            if limiter is not None and cost and limiter.admit_now(cost):
                if limiter.ahead_due():  # the common case: no wait, no timer
                    await limiter.take_ahead()
            elif limiter is not None and cost:

                async def gate() -> None:
                    await self._wait_for_reset(request, deadline)

                reset_waits = self._waited["provider_reset"]
                waited = await limiter.acquire(cost, deadline, gate)
                self._waited["rate_limit"] += waited - (
                    self._waited["provider_reset"] - reset_waits
                )
            else:
                await self._wait_for_reset(request, deadline)
        except BaseException as exc:
            if release is not None:
                release()
            if isinstance(exc, TimeoutError | StorageDown | ValueError):
                raise self._rate_error(exc, request, started) from None
            raise
        return release

    def _release(self) -> None:
        self._in_flight -= 1
        assert self._slots is not None
        self._slots.release()

    def _rate_error(
        self, exc: BaseException, request: httpx.Request, started: float
    ) -> LimitTimeout:
        assert self._limiter is not None
        limit = self._limiter.config.limit
        if isinstance(exc, StorageDown):
            detail = "its Redis cannot be reached and on_storage_error='closed'"
        elif isinstance(exc, ValueError):
            detail = f"the request's cost {_cost(request)} is more than the whole limit {limit}"
        else:
            detail = f"rate_limit={limit!r}"
        return LimitTimeout(self.name, "rate_limit", time.monotonic() - started, detail, request)

    async def _wait_for_reset(self, request: httpx.Request, deadline: float | None) -> None:
        limiter = self._limiter
        until = await limiter.blocked_until() if limiter is not None else self._blocked_until
        wait = until - time.time()
        if wait <= 0:
            return
        if deadline is not None and time.monotonic() + wait > deadline:
            reason = limiter.blocked_reason if limiter is not None else self._blocked_reason
            raise LimitTimeout(
                self.name,
                "provider_reset",
                0.0,
                f"the provider's {reason or 'rate limit'} resets in {wait:.2f} s",
                request,
            )
        await anyio.sleep(wait)
        self._waited["provider_reset"] += wait

    async def _block(self, until: float, reason: str) -> None:
        if self._limiter is not None:
            await self._limiter.block(until, reason)
        elif until > self._blocked_until:
            self._blocked_until, self._blocked_reason = until, reason

    @staticmethod
    def _count(counts: dict[str, int], key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    # -- lifecycle and stats -------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the wrapped transport and the rate limit's connections."""
        try:
            await self.inner.aclose()
        finally:
            if self._limiter is not None:
                await self._limiter.aclose()

    def stats(self) -> dict[str, Any]:
        """The wrapped transport's stats, and the policy's own counters.

        Added keys: `answers` (by status class, and 429 and 503 on their own),
        `retries_by_reason`, `not_retried` (by why not: `budget`, `deadline`,
        `retry_after_too_long`, `streamed_body`, `breaker_open`), `limit_wait_seconds`
        (time spent waiting, by `concurrency`, `rate_limit`, `provider_reset`), and when
        configured `concurrency`, `rate_limit`, `provider_block` and `breaker`.
        """
        inner_stats = getattr(self.inner, "stats", None)
        out: dict[str, Any] = dict(inner_stats()) if callable(inner_stats) else {}
        out["transport"] = type(self.inner).__name__
        out["answers"] = dict(self._answers)
        out["retries_by_reason"] = dict(self._retries)
        out["not_retried"] = dict(self._not_retried)
        out["limit_wait_seconds"] = {k: round(v, 3) for k, v in self._waited.items()}
        if self._slots is not None:
            out["concurrency"] = {
                "limit": self._max_concurrency,
                "in_flight": self._in_flight,
                "waiting": self._concurrency_waiting,
            }
        limiter = self._limiter
        if limiter is not None:
            out["rate_limit"] = limiter.stats()
        if limiter is not None:
            until, reason = limiter.block_state()
        else:
            until, reason = self._blocked_until, self._blocked_reason
        left = until - time.time()
        out["provider_block"] = {
            "seconds_left": round(max(0.0, left), 3),
            "reason": reason if left > 0 else None,
        }
        if self._breaker is not None:
            out["breaker"] = self._breaker.stats()
        return out


#: The answers' status classes, made once (they are counted for every answer).
_STATUS_CLASS: Final = {n: f"{n}xx" for n in range(1, 6)}


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _cost(request: httpx.Request) -> int:
    """The request's cost for the rate limit: `extensions["httpool.cost"]`, else 1."""
    cost = request.extensions.get(COST_EXTENSION, 1)
    if type(cost) is not int or cost < 0:
        msg = (
            f"extensions[{COST_EXTENSION!r}]={cost!r}: expected a whole number >= 0 "
            "(the request's weight in the rate limit, e.g. its estimated tokens)"
        )
        raise TypeError(msg)
    return cost
