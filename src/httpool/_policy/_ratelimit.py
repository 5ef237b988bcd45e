"""`RateLimit`: admitted requests per moving window, in memory or shared through Redis.

A request is admitted when fewer than `amount` (weighted by cost) were admitted in the
last `window` seconds, wherever that window starts (the `limits` library's moving
window, whose notation the limit is written in). In memory this is `LocalWindow`; in
Redis, the library's own moving window, with leases (`_lease.py`) that let each process
take a batch of admissions in one round trip. This module adds the waiting (first come, first served
in the process), the fallback when Redis is gone, and the "blocked until" time that a
provider's own headers set (shared through Redis too).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio

from .._budget import _web_concurrency
from .._errors import ConfigError
from .._secret import redact_url
from ._lease import LeaseLog

if TYPE_CHECKING:
    from limits import RateLimitItem

__all__ = ["RateLimit", "RateLimiter", "StorageDown"]

logger = logging.getLogger("httpool")

_REDIS_SCHEMES: Final = ("redis://", "rediss://", "redis+unix://")
#: Seconds a Redis command may take before the limiter treats Redis as down.
STORAGE_TIMEOUT: Final = 0.5
#: Seconds between attempts to reach Redis again while the limiter runs on its fallback.
RECHECK_EVERY: Final = 2.0
#: Seconds between reads of the provider's reset shared in Redis.
BLOCK_READ_EVERY: Final = 0.05


def _parse(limit: str) -> RateLimitItem:
    from limits import parse

    return parse(limit)


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class RateLimit:
    """A provider's request-rate limit: `Provider(rate_limit=httpool.RateLimit(...))`.

    `rate_limit="500/minute"` is `RateLimit("500/minute")`: in this process's memory.

    Arguments:
        limit: requests (or cost units) per window, in the `limits` library's notation:
            `"500/minute"`, `"20/second"`, `"10000 per 1 minute"`. It holds in every
            window of that length, not only in clock-aligned ones.
        storage: `"memory://"` (each process has its own limit), or a Redis URL
            (`redis://host:6379/0`, `rediss://...`) that every worker process and host
            of a deployment shares; needs `pip install 'httpool[redis]'`.
        key: the name of the limit in the shared storage; providers (or deployments)
            with the same key share one limit. Default: `httpool:<provider name>`.
        on_storage_error: what happens while Redis cannot be reached: `"local"` (the
            default) admits requests against a limit in this process's memory, of
            `limit / WEB_CONCURRENCY`, and logs a warning; `"closed"` refuses them with
            `LimitTimeout` (an `httpx.PoolTimeout`). Redis is tried again every 2 s.
        margin: seconds added to each wait for the window to free up. An admission is
            stamped before the request travels to the provider, and that trip takes
            longer for some requests than for others (a busy process, a new
            connection); the margin keeps the provider from counting one window's
            admissions in less than the window. `None`: 5 % of the window, from 20 ms
            to 250 ms (50 ms for a per-second limit, 250 ms for a per-minute one).
    """

    limit: str
    storage: str = "memory://"
    key: str | None = None
    on_storage_error: Literal["local", "closed"] = "local"
    margin: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.limit, str):
            msg = f"RateLimit(limit={self.limit!r}): expected a str such as '500/minute'"
            raise ConfigError(msg)
        try:
            item = _parse(self.limit)
        except ValueError:
            msg = (
                f"RateLimit(limit={self.limit!r}): not a rate; write it as '500/minute', "
                "'20/second' or '10000 per 1 minute'"
            )
            raise ConfigError(msg) from None
        if item.amount < 1:
            msg = f"RateLimit(limit={self.limit!r}): the amount must be at least 1"
            raise ConfigError(msg)
        storage: object = self.storage
        if not isinstance(storage, str) or not (
            storage == "memory://" or storage.startswith(_REDIS_SCHEMES)
        ):
            shown = redact_url(storage) if isinstance(storage, str) else type(storage).__name__
            msg = (
                f"RateLimit(storage={shown!r}): expected 'memory://' or a Redis URL "
                "(redis://host:6379/0, rediss://..., redis+unix://...)"
            )
            raise ConfigError(msg)
        on_error: object = self.on_storage_error
        if on_error not in ("local", "closed"):
            msg = (
                f"RateLimit(on_storage_error={self.on_storage_error!r}): "
                "expected 'local' or 'closed'"
            )
            raise ConfigError(msg)
        margin: object = self.margin
        if margin is not None and not (isinstance(margin, int | float) and 0 <= margin < math.inf):
            msg = f"RateLimit(margin={margin!r}): expected seconds >= 0, or None"
            raise ConfigError(msg)
        key: object = self.key
        if key is not None and not (isinstance(key, str) and key):
            msg = f"RateLimit(key={self.key!r}): expected a non-empty str or None"
            raise ConfigError(msg)

    @property
    def shared(self) -> bool:
        """Whether the limit lives in Redis."""
        return self.storage != "memory://"

    def __repr__(self) -> str:
        parts = [repr(self.limit)]
        if self.shared:
            parts.append(f"storage={redact_url(self.storage)!r}")
        if self.key is not None:
            parts.append(f"key={self.key!r}")
        if self.on_storage_error != "local":
            parts.append(f"on_storage_error={self.on_storage_error!r}")
        if self.margin is not None:
            parts.append(f"margin={self.margin!r}")
        return f"RateLimit({', '.join(parts)})"


class StorageDown(Exception):  # noqa: N818  an internal signal, never raised to callers
    """Redis cannot be reached and the limit fails closed."""


def _margin(window: float) -> float:
    """The default margin: 5 % of the window, from 20 ms to 250 ms."""
    return min(0.25, max(0.02, 0.05 * window))


class LocalWindow:
    """A moving window in this process's memory: `amount` units in any `span` seconds.

    The same algorithm as the `limits` library's moving window (a log of admissions),
    kept in a deque with a running sum: about 2 µs a request. The library's in-memory
    storages cost 15-80 µs a request (a lock per hit and a timer thread or a thread
    hand-off for their expiry, measured), which is more than the 5 % of a request the
    limiter may take; Redis goes through the library.
    """

    __slots__ = ("_entries", "_used", "amount", "span")

    def __init__(self, amount: int, span: float) -> None:
        self.amount, self.span = amount, span
        self._entries: collections.deque[tuple[float, int]] = collections.deque()
        self._used = 0

    def admit(self, cost: int) -> float | None:
        """`None` when `cost` units are admitted now, else the `time.time()` at which
        enough of them will have left the window."""
        now = time.time()
        entries = self._entries
        horizon = now - self.span
        while entries and entries[0][0] <= horizon:
            self._used -= entries.popleft()[1]
        if self._used + cost <= self.amount:
            entries.append((now, cost))
            self._used += cost
            return None
        need, freed = self._used + cost - self.amount, 0
        for stamp, units in entries:
            freed += units
            if freed >= need:
                return stamp + self.span
        return now + self.span  # more than the whole window: never (the caller times out)


class RateLimiter:
    """One provider's rate limit in this process: admits requests, waiting in turn.

    With Redis and a window of 20 s or more, admissions are leased: the process takes a
    batch of them with one round trip, sized from its own rate over the lease's hold
    (under a second), at most a tenth of the limit and an eighth of what the window had
    left (one at a time, held for no time, when that is less than two); the next lease
    is taken when a quarter of the current one (of its units or of its hold) is left, by
    the request that found it so, while the others go on. See `_lease.py` for why the
    limit holds.
    """

    def __init__(self, config: RateLimit, name: str) -> None:
        self.config = config
        self.name = name
        self.item = _parse(config.limit)
        self.window = float(self.item.get_expiry())
        self._margin = _margin(self.window) if config.margin is None else config.margin
        self._key = config.key or f"httpool:{name}"
        self._redis: Any = None
        self._log: LeaseLog | None = None
        amount = self.item.amount
        if config.shared:
            self._connect(config.storage)
            amount = max(1, amount // _web_concurrency())  # the fallback's share
        self._local = LocalWindow(amount, self.window + self._margin)
        self._turn = anyio.Lock()
        self._blocked_until = 0.0  # time.time() before which the provider refuses
        self._block_read_at = 0.0  # when the shared block was last read
        self._blocked_reason: str | None = None
        self.state = "ok"
        self._recheck_at = 0.0
        self.waiting = 0
        self.admitted = 0
        self._units = 0  # units admitted, for the rate that sizes leases
        self._rate = 0.0  # units per second, smoothed
        self._rate_at = time.monotonic()
        self._rate_units = 0
        self._taking_ahead = False

    def _connect(self, url: str) -> None:
        try:
            import redis.asyncio
            from redis.asyncio.retry import Retry as RedisRetry
            from redis.backoff import NoBackoff
        except ImportError:  # pragma: no cover - depends on the extra
            msg = (
                f"provider {self.name!r}: a Redis rate limit needs the redis package: "
                "pip install 'httpool[redis]'"
            )
            raise ImportError(msg) from None
        options: dict[str, Any] = {
            "socket_timeout": STORAGE_TIMEOUT,
            "socket_connect_timeout": STORAGE_TIMEOUT,
            # One immediate retry (a connection left stale by a Redis restart), not
            # redis-py's default backoff of seconds: a request must not wait on it.
            "retry": RedisRetry(NoBackoff(), 1),
        }
        # One connection pool of our own, for the leases and the "blocked until" key, so
        # that closing the provider closes every connection.
        self._redis = redis.asyncio.Redis(
            connection_pool=redis.asyncio.ConnectionPool.from_url(url, **options)
        )
        from limits.aio.storage import RedisStorage

        storage = RedisStorage(
            f"async+{url}",
            implementation="redispy",
            wrap_exceptions=True,
            connection_pool=self._redis.connection_pool,
        )
        item = self.item
        self._log = LeaseLog(
            storage,
            # the window's length in the key: limits of different windows never share one
            f"{self._key}:{item.amount}/{item.multiples}{item.GRANULARITY.name}",
            amount=item.amount,
            window=item.get_expiry(),
            margin=self._margin,
        )

    # -- admission -----------------------------------------------------------------------

    async def acquire(
        self, cost: int, deadline: float | None, gate: Callable[[], Awaitable[None]]
    ) -> float:
        """Wait for `cost` units of the limit, until `deadline` (`time.monotonic()`).

        `gate` is awaited in the request's turn before each try (the wait for the
        provider's own reset).

        Returns the seconds waited. Raises `TimeoutError` when the deadline passes
        first, `StorageDown` when Redis is down and the limit fails closed.
        """
        if cost > self.item.amount:
            raise ValueError(cost)
        started = time.monotonic()
        log = self._log
        # Nobody waits here, or the lease held has units (those waiting only wait for
        # their turn to take one): try at once, without I/O. Otherwise a queue that
        # formed while a lease was fetched would never drain, each new caller joining it.
        if not self._turn.locked() or (log is not None and log.lease.left >= cost):
            await gate()  # bounded by the deadline itself
            if self._take_now(cost):
                self._count(cost)
                if self.ahead_due():
                    await self.take_ahead()  # admitted already; the others go on
                return time.monotonic() - started
        self.waiting += 1
        try:
            with anyio.fail_after(None if deadline is None else max(0.0, deadline - started)):
                async with self._turn:
                    while True:
                        await gate()
                        reset = await self._hit(cost)
                        if reset is None:
                            break
                        await anyio.sleep(max(0.0, reset - time.time()))
        finally:
            self.waiting -= 1
        self._count(cost)
        return time.monotonic() - started

    def admit_now(self, cost: int) -> bool:
        """Admit `cost` units at once, without I/O or waiting, when that is certain:
        nobody waits in turn (or the lease held has the units), no provider reset is in
        force as last read (and, with Redis, no read of it is due), and the window in
        memory or the lease held has the units. False: go through `acquire`."""
        if self._blocked_until > time.time():
            return False
        log = self._log
        if log is None:
            if self._turn.locked() or self._local.admit(cost) is not None:
                return False
        elif (
            time.monotonic() - self._block_read_at > BLOCK_READ_EVERY
            or (self._turn.locked() and log.lease.left < cost)
            or not log.lease.take(cost)
        ):
            return False
        self._count(cost)
        return True

    def ahead_due(self) -> bool:
        """After `admit_now`: whether this request should take the next lease now
        (`take_ahead`), the current one running low and nobody taking it already."""
        log = self._log
        return log is not None and not self._taking_ahead and log.lease.running_low()

    async def take_ahead(self) -> None:
        """Take the next lease while the current one still has units (see `ahead_due`)."""
        if self._log is not None:
            await self._take_ahead(self._log)

    def _count(self, cost: int) -> None:
        self.admitted += 1
        self._units += cost

    def _take_now(self, cost: int) -> bool:
        """Admit from memory or from the lease held, without waiting; False when Redis
        (or the fallback) must be asked in turn."""
        log = self._log
        if log is None:
            return self._local.admit(cost) is None
        return log.lease.take(cost)

    async def _hit(self, cost: int) -> float | None:
        """`None` when admitted, else the `time.time()` at which to try again."""
        log = self._log
        if log is None:
            return self._local.admit(cost)
        if log.lease.take(cost):  # the units already leased, even while Redis is down
            return None
        if self.state == "ok" or time.monotonic() >= self._recheck_at:
            want, hold = self._lease_size(log, cost)
            try:
                with anyio.fail_after(STORAGE_TIMEOUT * 2):
                    wait = await log.take(want, cost, hold)
            except Exception as exc:  # noqa: BLE001  any storage failure: fall back or close
                self._storage_failed(exc)
            else:
                self._storage_ok()
                return None if wait is None else time.time() + wait
        if self.config.on_storage_error == "closed":
            raise StorageDown
        return self._local.admit(cost)

    async def _take_ahead(self, log: LeaseLog) -> None:
        """Take the next lease while the current one still has units, so that the
        process's requests rarely wait for Redis."""
        if self.state != "ok":
            return
        want, hold = self._lease_size(log, 1)
        if hold <= 0:
            return
        self._taking_ahead = True
        try:
            with anyio.fail_after(STORAGE_TIMEOUT * 2):
                await log.take(want, 1, hold, ahead=True)
        except Exception as exc:  # noqa: BLE001  any storage failure: fall back or close
            self._storage_failed(exc)
        finally:
            self._taking_ahead = False

    def _lease_size(self, log: LeaseLog, cost: int) -> tuple[int, float]:
        """The units to ask Redis for, and how long to hold them.

        Enough for this process's rate over the hold, or for the requests waiting here
        now; at most a tenth of the limit and an eighth of what the window had left at
        the last grant; `cost` alone, held for no time, when that is all there is.
        """
        now = time.monotonic()
        elapsed = now - self._rate_at
        if elapsed > 0:
            current = (self._units - self._rate_units) / elapsed
            self._rate = current if self._rate == 0 else (self._rate + current) / 2
        self._rate_at, self._rate_units = now, self._units
        hold = log.hold
        want = max(cost * (1 + self.waiting), math.ceil(self._rate * hold))
        want = min(want, max(1, log.amount // 10), log.room // 8)
        if hold <= 0 or want <= cost:
            return cost, 0.0
        return want, hold

    def _storage_ok(self) -> None:
        if self.state != "ok":
            self.state = "ok"
            logger.warning(
                "httpool provider %r: Redis is back; the shared rate limit applies again",
                self.name,
                extra={"provider": self.name},
            )

    def _storage_failed(self, exc: BaseException) -> None:
        self._recheck_at = time.monotonic() + RECHECK_EVERY
        if self.state == "ok":
            closed = self.config.on_storage_error == "closed"
            self.state = "closed" if closed else "fallback"
            logger.warning(
                "httpool provider %r: the rate limit's Redis (%s) cannot be reached (%s); %s",
                self.name,
                redact_url(self.config.storage),
                type(exc).__name__,
                "requests are refused until it is back (on_storage_error='closed')"
                if closed
                else f"admitting against a per-process limit of {self._local.amount} per "
                f"{self.window:g} s meanwhile",
                extra={"provider": self.name},
            )

    # -- what the provider said ----------------------------------------------------------

    async def blocked_until(self) -> float:
        """The `time.time()` before which new requests should wait (0: none).

        With Redis, the shared value is read at most every 50 ms (a block set by another
        worker is seen within that), so that a request costs no extra round trip.
        """
        now = time.monotonic()
        if (
            self._redis is not None
            and self.state == "ok"
            and now - self._block_read_at > BLOCK_READ_EVERY
        ):
            self._block_read_at = now
            try:
                with anyio.fail_after(STORAGE_TIMEOUT * 2):
                    raw = await self._redis.get(f"{self._key}:blocked")
            except Exception as exc:  # noqa: BLE001  same fallback as the limit
                self._storage_failed(exc)
            else:
                self._read_block(raw)
        return self._blocked_until

    def _read_block(self, raw: bytes | None) -> None:
        """Heed the shared "blocked until" value read from Redis."""
        self._block_read_at = time.monotonic()
        if raw is not None:
            try:
                shared = float(raw)
            except ValueError:
                shared = 0.0
            self._blocked_until = max(self._blocked_until, shared)

    async def block(self, until: float, reason: str) -> None:
        """Make new requests wait until `until` (`time.time()`), in every worker when
        the limit is shared."""
        if until <= self._blocked_until:
            return
        self._blocked_until = until
        self._blocked_reason = reason
        if self._redis is not None and self.state == "ok":
            ms = max(1, math.ceil((until - time.time()) * 1000))
            try:
                with anyio.fail_after(STORAGE_TIMEOUT * 2):
                    await self._redis.set(f"{self._key}:blocked", repr(until), px=ms)
            except Exception as exc:  # noqa: BLE001
                self._storage_failed(exc)

    def block_state(self) -> tuple[float, str | None]:
        """The last known `time.time()` of the provider's reset, and what said it."""
        return self._blocked_until, self._blocked_reason

    @property
    def blocked_reason(self) -> str | None:
        """The header that set the current block, if one is in force."""
        return self._blocked_reason if self._blocked_until > time.time() else None

    async def aclose(self) -> None:
        """Close the Redis connections."""
        if self._redis is not None:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(1.0):
                    await self._redis.aclose()
                    await self._redis.connection_pool.disconnect()

    def stats(self) -> dict[str, Any]:
        """The limit, its storage and state, the requests waiting and admitted, and with
        Redis the leases taken, the units they granted, the units of leases that ended
        unused and the units of the current lease still to use."""
        out: dict[str, Any] = {
            "limit": self.config.limit,
            "storage": "redis" if self.config.shared else "memory",
            "state": self.state,
            "waiting": self.waiting,
            "admitted": self.admitted,
        }
        log = self._log
        if log is not None:
            out["leases"] = log.leases
            out["leased"] = log.leased
            held = time.monotonic() < log.lease.end
            out["unused"] = log.unused + (0 if held else log.lease.left)  # hold ended
            out["lease_left"] = log.lease.left if held else 0
        return out
