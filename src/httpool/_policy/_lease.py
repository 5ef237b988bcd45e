"""Leases of a shared limit kept by the `limits` library's moving window in Redis.

The shared limit is the `limits` library's moving window: a list in Redis of one
timestamp per admitted unit, to which its script adds entries only while fewer than the
limit are younger than the window's length. httpool adds *leases* on top: a process
takes several units at once (one round trip, one `acquire_entry` of that cost) and then
admits that many requests itself, without a round trip, until the lease's *hold* ends.
What a lease has not used by then is lost to the window (the library has no way to
remove entries) and counted as `unused`.

Why the limit holds in every window of its length, wherever it starts: a unit leased
at `t` is stamped `t` and may carry a request that reaches the provider as late as
`t + hold + margin`. So the window the library checks is longer than the limit's by
at least `hold + margin`, rounded up to whole seconds, because the library counts
lengths in whole seconds (for a per-minute limit, 61 s instead of 60: 1.6 % of the
rate at the limit). Take a window `[x, x + window)` of arrivals at the provider: every
lease with a request arriving in it was taken after `x - hold - margin`, and before
`x + window`, so all of them lie within one span of the library's window, which admits
at most the limit in any span.

For a limit of less than `LEASE_MIN_WINDOW` seconds the whole second would cost more
than 5 % of the rate, so there are no leases: each request takes one unit with a round
trip, in a window of the limit's own length, and the margin is applied by reading the
window over `window + margin` first (best effort: two workers that race past that read
are still held to the limit in the window's length by the library's atomic check).

The timestamps are the taking host's `time.time()`: hosts that share a limit need
synchronised clocks (NTP); a skew of `s` seconds between two of them adds `s` to the
margin they need.
"""

from __future__ import annotations

import math
import time
from typing import Any, Final

__all__ = ["LEASE_MIN_WINDOW", "Lease", "LeaseLog"]

#: The shortest limit window (seconds) whose admissions are leased.
LEASE_MIN_WINDOW: Final = 20
#: The shortest hold of a lease, in seconds.
MIN_HOLD: Final = 0.5


class Lease:
    """The units of one lease that this process may still admit, until `end`."""

    __slots__ = ("end", "granted", "hold", "left")

    def __init__(
        self, left: int = 0, end: float = 0.0, granted: int = 0, hold: float = 0.0
    ) -> None:
        self.left, self.end = left, end
        self.granted, self.hold = granted, hold

    def take(self, cost: int) -> bool:
        """Admit `cost` units of the lease when it has them and its hold has not ended."""
        if self.left >= cost and time.monotonic() < self.end:
            self.left -= cost
            return True
        return False

    def running_low(self) -> bool:
        """Whether a held lease (not a single admission) has a quarter or less of its
        units or of its hold left: the time to take the next one."""
        if self.hold <= 0 or not self.left:
            return False
        return self.left * 4 <= self.granted or time.monotonic() > self.end - self.hold / 4


class LeaseLog:
    """This process's side of one shared limit: its lease, and the calls to the `limits`
    library's moving window that take the next one.

    Arguments:
        storage: a `limits.aio.storage.RedisStorage` (its moving-window methods).
        key: the limit's key in Redis.
        amount: the limit's units per window.
        window: the limit's window, in whole seconds.
        margin: seconds a request may take to reach the provider after it was admitted.
    """

    def __init__(self, storage: Any, key: str, *, amount: int, window: int, margin: float) -> None:
        self.storage, self.key, self.amount = storage, key, amount
        self.margin = margin
        if window >= LEASE_MIN_WINDOW:
            extra = math.ceil(margin + MIN_HOLD)
            #: The length of the library's window: the limit's, plus hold and margin.
            self.span = window + extra
            #: The longest a lease is held, in seconds (0: no leases).
            self.hold = extra - margin
        else:
            self.span, self.hold = window, 0.0
        self.lease = Lease()
        #: The units left in the shared window as last read by a refused request (for
        #: sizing; the whole limit after a grant).
        self.room = amount
        self._roomy_until = 0.0  # until when the window is taken as far from full
        self.leases = 0
        self.leased = 0
        self.unused = 0

    def retire(self) -> None:
        """Take the current lease out of use; its units not admitted are lost."""
        old, self.lease = self.lease, Lease()
        self.unused += old.left

    async def take(self, want: int, need: int, hold: float, *, ahead: bool = False) -> float | None:
        """Ask for `want` units (at least `need`), held for `hold` seconds.

        Without `ahead`, the current lease is out of use from now, and `need` units of
        the new one are admitted at once. With `ahead` (taken before the current lease
        runs out), the current lease stays in use until the new one arrives.

        Returns `None` when granted (the rest of the grant is the new lease), else the
        seconds until `need` units may fit. Raises what the Redis client raises.
        """
        if not ahead:
            self.retire()
        sent = time.monotonic()
        if self.hold <= 0 and self.margin > 0 and sent >= self._roomy_until:
            wait = await self._read(need, self.span + self.margin)
            if wait is not None:
                return wait
        granted = want if await self._acquire(want) else 0
        if not granted and want > need:
            wait = await self._read(need, self.span)
            if wait is not None:
                return wait
            granted = max(need, min(want, self.room))  # what is left, at most
            if not await self._acquire(granted):
                granted = 0
        if not granted:
            wait = await self._read(need, self.span)
            return 0.0 if wait is None else wait  # freed meanwhile: try again at once
        self.room = self.amount  # not known after a grant: a refusal reads it again
        self.leases += 1
        self.leased += granted
        if ahead:
            self.retire()
        left = granted if ahead else granted - need
        self.lease = Lease(left, sent + hold, granted, hold)
        return None

    async def _acquire(self, units: int) -> bool:
        return bool(await self.storage.acquire_entry(self.key, self.amount, self.span, units))

    async def _read(self, need: int, length: float) -> float | None:
        """Read the window over `length` seconds: `None` when `need` units fit, else the
        seconds until its oldest entry leaves it. Notes the room left for sizing."""
        oldest, count = await self.storage.get_moving_window(self.key, self.amount, length)
        self.room = max(0, self.amount - count)
        if count + need <= self.amount:
            if 2 * (count + need) <= self.amount:  # far from full: skip the next reads
                self._roomy_until = time.monotonic() + min(0.1, 0.05 * length)
            return None
        return max(0.0, float(oldest) + length - time.time())
