"""`Breaker`: fail fast on a provider that is down, and let one trial request decide."""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from typing import Any

from .._errors import ConfigError

__all__ = ["Breaker", "CircuitBreaker"]


@dataclasses.dataclass(frozen=True, slots=True)
class Breaker:
    """When a provider's circuit opens: `Provider(breaker=httpool.Breaker(...))`.

    `breaker=True` is `Breaker()` with these defaults.

    Arguments:
        failures: failures (a connect error, a timeout, or a 5xx answer) within
            `window` seconds that open the circuit (5: a few unlucky requests do not,
            a provider that is down does within seconds).
        window: seconds over which failures are counted (30).
        cooldown: seconds the circuit stays open before one trial request is let
            through (15: long enough for a restart or a failover, short enough that a
            recovered provider is back quickly). The trial's success closes the
            circuit; its failure opens it for another `cooldown`.
    """

    failures: int = 5
    window: float = 30.0
    cooldown: float = 15.0

    def __post_init__(self) -> None:
        if type(self.failures) is not int or self.failures < 1:
            msg = f"Breaker(failures={self.failures!r}): expected a whole number >= 1"
            raise ConfigError(msg)
        for name in ("window", "cooldown"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                msg = f"Breaker({name}={value!r}): expected seconds > 0"
                raise ConfigError(msg)


class CircuitBreaker:
    """The state of one provider's circuit in this process: closed, open or half-open."""

    __slots__ = ("_failures", "_opened_at", "_trial", "config", "opened", "state")

    def __init__(self, config: Breaker) -> None:
        self.config = config
        self._failures: collections.deque[float] = collections.deque()
        self._opened_at = 0.0
        self._trial = False
        self.state = "closed"
        self.opened = 0

    def retry_in(self) -> float:
        """Seconds until a trial request may go (0 when closed or due)."""
        if self.state == "closed":
            return 0.0
        return max(0.0, self._opened_at + self.config.cooldown - time.monotonic())

    def admit(self) -> bool | None:
        """`True`: send; `None`: send as the trial request; `False`: fail at once."""
        if self.state == "closed":
            return True
        if self.state == "open" and self.retry_in() == 0:
            self.state = "half_open"
        if self.state == "half_open" and not self._trial:
            self._trial = True
            return None
        return False

    def record(self, *, ok: bool, trial: bool) -> None:
        """The outcome of a request that `admit` let through."""
        now = time.monotonic()
        if trial:
            self._trial = False
            if ok:
                self.state = "closed"
                self._failures.clear()
            else:
                self._open(now)
            return
        if ok or self.state != "closed":
            return
        failures = self._failures
        failures.append(now)
        while failures and failures[0] < now - self.config.window:
            failures.popleft()
        if len(failures) >= self.config.failures:
            self._open(now)

    def release_trial(self) -> None:
        """The trial request ended without an outcome (cancelled): let another try."""
        self._trial = False

    def _open(self, now: float) -> None:
        self.state = "open"
        self._opened_at = now
        self.opened += 1
        self._failures.clear()

    def failures(self) -> int:
        """Failures counted in the current window."""
        return len(self._failures)

    def stats(self) -> dict[str, Any]:
        """`state`, `failures` (recent), `retry_in` seconds, `opened` (times so far)."""
        return {
            "state": self.state,
            "failures": len(self._failures),
            "retry_in": round(self.retry_in(), 3),
            "opened": self.opened,
        }
