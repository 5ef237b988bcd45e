"""Leases of a shared moving window in Redis: admissions taken in batches.

The shared limit is a log in Redis (a sorted set) of *leases*. A lease is a number of
admissions ("units") granted at once to one process, scored with the time by which the
process will have used all of them: the time it was granted (Redis's clock) plus its
*hold*. One Lua script, run atomically by Redis, drops the leases scored more than
`span` seconds ago (`span` is the limit's window plus its margin), takes back what the
process returns of its previous lease, and grants the new one when the units of the
leases left (those scored in the future included) leave room for it; otherwise it says
how long until they do. The process then admits the units of its lease itself, without
a round trip, until the hold ends; what it has not used it returns with its next lease
(or on close), and what a process that died held simply leaves the window in time.

Why the limit holds in every window of its length, wherever it starts: take a window
`[x, x + window)` of arrivals at the provider, and among the leases that have a request
arriving in it, the one granted last, at `t`. Every such request was sent at most
`hold` after its lease was granted, so no later than the lease's score, and it arrives
within the margin after it was sent; so each of these leases is scored after
`x - margin`, which is after `t - span` since `t < x + window`. When the last one was
granted, all of them were in the log and counted, and the script granted it only if
their units, its own included, were at most the limit. A lease given back early only
lowers its units, after its requests were sent; so the bound holds. (The `limits`
library's moving window stamps each entry when it is taken and keeps it for whole
seconds, so it cannot count a lease for the time it may take to use.)
"""

from __future__ import annotations

import itertools
import math
import os
import time
from typing import Any, Final

__all__ = ["Lease", "LeaseLog"]

#: The script. KEYS: the log (sorted set; member "<units>:<lease id>", score the time by
#: which its units are used), the units in the log, the provider's "blocked until" key.
#: ARGV: amount, span (s), want, need, hold (s), the new lease's id, the keys' time to
#: live (ms), then for each lease given back its member and its units not used.
#: Returns: units granted (0: refused), seconds until `need` units fit (when refused),
#: units left after the grant, and the "blocked until" value when there is one.
SCRIPT: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local amount, span = tonumber(ARGV[1]), tonumber(ARGV[2])
local want, need, hold = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function units(member)
  return tonumber(string.match(member, '^(%d+):'))
end
local horizon = now - span
local used = tonumber(redis.call('GET', KEYS[2]))
if redis.call('EXISTS', KEYS[1]) == 0 then
  used = 0  -- no lease in the log (a count left alone by an eviction counts nothing)
elseif used == nil then
  used = 0
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    used = used + units(member)
  end
else
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon)
  if #gone > 0 then
    for _, member in ipairs(gone) do
      used = used - units(member)
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
  end
end
for i = 8, #ARGV, 2 do
  local member, back = ARGV[i], tonumber(ARGV[i + 1])
  local score = redis.call('ZSCORE', KEYS[1], member)
  if score and back > 0 then
    local held = units(member)
    back = math.min(back, held)
    redis.call('ZREM', KEYS[1], member)
    used = used - back
    if held > back then
      local id = string.match(member, '^%d+(:.*)$')
      redis.call('ZADD', KEYS[1], score, (held - back) .. id)
    end
  end
end
if used < 0 then
  used = 0
end
local granted, wait = 0, 0
if need > 0 then
  if amount - used >= need then
    granted = math.min(want, amount - used)
    redis.call('ZADD', KEYS[1], now + hold, granted .. ':' .. ARGV[6])
    used = used + granted
  else
    local short, freed = need - (amount - used), 0
    -- every lease holds a unit at least: the `short` oldest ones are enough
    local oldest = redis.call('ZRANGE', KEYS[1], 0, short - 1, 'WITHSCORES')
    for i = 1, #oldest, 2 do
      freed = freed + units(oldest[i])
      if freed >= short then
        wait = tonumber(oldest[i + 1]) + span - now
        break
      end
    end
  end
end
redis.call('SET', KEYS[2], used, 'PX', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return {granted, tostring(wait), amount - used, redis.call('GET', KEYS[3])}
"""

_token = os.urandom(6).hex()
_serial = itertools.count(1)


class Lease:
    """The units of one lease that this process may still admit, until `end`."""

    __slots__ = ("end", "granted", "hold", "left", "member")

    def __init__(
        self, member: str = "", left: int = 0, end: float = 0.0, granted: int = 0, hold: float = 0.0
    ) -> None:
        self.member, self.left, self.end = member, left, end
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
    """This process's side of one shared limit: its lease, and the script that takes the
    next one (returning what is left of the previous ones).

    Arguments:
        redis: a `redis.asyncio.Redis` client.
        key: the limit's key; the log is `<key>:leases`, its units `<key>:used`.
        blocked_key: the provider's "blocked until" key, read with each lease.
        amount: the limit's units per window.
        span: the window plus the margin, in seconds.
        hold: the longest a lease is held, in seconds.
    """

    def __init__(
        self, redis: Any, key: str, *, blocked_key: str, amount: int, span: float, hold: float
    ) -> None:
        self.amount, self.span, self.hold = amount, span, hold
        self.keys = [f"{key}:leases", f"{key}:used", blocked_key]
        self._ttl_ms = math.ceil(2 * (span + hold) * 1000) + 1000
        self._script = redis.register_script(SCRIPT)
        self.lease = Lease()
        self._back: list[tuple[str, int]] = []  # leases out of use, units to give back
        #: The units left in the shared window after the last grant (for sizing).
        self.room = amount
        self.leases = 0
        self.leased = 0
        self.returned = 0

    def retire(self) -> None:
        """Take the current lease out of use; its unused units go back with the next
        call to Redis."""
        old, self.lease = self.lease, Lease()
        if old.member and old.left:
            self._back.append((old.member, old.left))

    async def take(
        self, want: int, need: int, hold: float, *, ahead: bool = False
    ) -> tuple[float | None, bytes | None]:
        """Ask for `want` units (at least `need`) held for `hold` seconds, giving back
        what is left of the leases out of use.

        Without `ahead`, the current lease is out of use from now, and `need` units of
        the new one are admitted at once. With `ahead` (taken before the current lease
        runs out), the current lease stays in use until the new one arrives.

        Returns `(None, blocked)` when granted (the rest of the grant is the new lease),
        else `(seconds until need units fit, blocked)`; `blocked` is the raw "blocked
        until" value, if any. Raises what the Redis client raises (the units it was
        giving back then leave the window in time).
        """
        if not ahead:
            self.retire()
        back, self._back = self._back, []
        # the process id too: workers forked from one parent share its token and serial
        lease_id = f"{_token}:{os.getpid()}:{next(_serial)}"
        sent = time.monotonic()
        reply = await self._run(want, need, hold, lease_id, back)
        self.returned += sum(units for _, units in back)
        granted, wait, room = int(reply[0]), float(reply[1]), int(reply[2])
        blocked = reply[3] if len(reply) > 3 else None
        self.room = room
        if granted == 0:
            return max(0.0, wait), blocked
        self.leases += 1
        self.leased += granted
        if ahead:
            self.retire()
        left = granted if ahead else granted - need
        self.lease = Lease(f"{granted}:{lease_id}", left, sent + hold, granted, hold)
        return None, blocked

    async def give_back(self) -> None:
        """Give back what is left of every lease (on close)."""
        self.retire()
        back, self._back = self._back, []
        if back:
            await self._run(0, 0, 0.0, "", back)
            self.returned += sum(units for _, units in back)

    async def _run(
        self, want: int, need: int, hold: float, lease_id: str, back: list[tuple[str, int]]
    ) -> Any:
        args: list[Any] = [self.amount, repr(self.span), want, need, repr(hold), lease_id]
        args.append(self._ttl_ms)
        for member, units in back:
            args += [member, units]
        return await self._script(keys=self.keys, args=args)
