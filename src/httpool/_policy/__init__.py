"""A provider's policy: retries of answers, concurrency and rate limits, circuit breaker."""

from __future__ import annotations

from ._breaker import Breaker
from ._errors import CircuitOpenError, LimitTimeout
from ._ratelimit import RateLimit
from ._retry import Retry
from ._sync import SyncPolicyTransport
from ._transport import PolicyTransport
from ._validate import has_policy, validate_policy, wrap_policy

__all__ = [
    "Breaker",
    "CircuitOpenError",
    "LimitTimeout",
    "PolicyTransport",
    "RateLimit",
    "Retry",
    "SyncPolicyTransport",
    "has_policy",
    "validate_policy",
    "wrap_policy",
]
