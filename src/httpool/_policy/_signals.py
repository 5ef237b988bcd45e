"""What a provider's answer says about its rate limit: until when new requests should wait.

Read from:

- OpenAI: `x-ratelimit-remaining-requests` / `-tokens` with `x-ratelimit-reset-requests`
  / `-tokens` as Go durations (`1s`, `6m0s`, `20ms`, `1m30.5s`);
- Anthropic: `anthropic-ratelimit-requests-remaining` / `-tokens-` / `-input-tokens-` /
  `-output-tokens-` with `-reset` as an RFC 3339 time;
- the IETF fields: `RateLimit: "name";r=0;t=10` (draft 9 and later) and the older
  `RateLimit-Remaining: 0` with `RateLimit-Reset: 10`;
- a 429 or 503 answer with `Retry-After` or `retry-after-ms`.
"""

from __future__ import annotations

import datetime
import math
import re
import time
from typing import Final

import httpx

from ._retry import parse_retry_after

__all__ = ["blocked_for", "parse_duration"]

_GO_DURATION: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_OPENAI: Final = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
)
_ANTHROPIC: Final = tuple(
    (f"anthropic-ratelimit-{kind}-remaining", f"anthropic-ratelimit-{kind}-reset")
    for kind in ("requests", "tokens", "input-tokens", "output-tokens")
)
_PARAM: Final = re.compile(r";\s*([a-z*][a-z0-9_.*-]*)\s*=\s*([^;,\s]+)")


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration (`6m0s`, `1.5s`, `20ms`) or a plain number of seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if 0 <= value < math.inf else None
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos else None


def _rfc3339(text: str, now: float) -> float | None:
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def _zero(value: str | None) -> bool:
    if value is None:
        return False
    try:
        return float(value) <= 0
    except ValueError:
        return False


def _ietf(headers: httpx.Headers) -> float | None:
    """Seconds to the reset of an exhausted IETF `RateLimit` field, else `None`."""
    longest: float | None = None
    for field in headers.get_list("ratelimit", split_commas=True):
        params = dict(_PARAM.findall(field.lower()))
        if "r" in params and "t" in params and _zero(params["r"]):
            seconds = parse_duration(params["t"])
            if seconds is not None:
                longest = max(longest or 0.0, seconds)
    if _zero(headers.get("ratelimit-remaining")):
        reset = headers.get("ratelimit-reset")
        seconds = parse_duration(reset) if reset is not None else None
        if seconds is not None:
            longest = max(longest or 0.0, seconds)
    return longest


def blocked_for(response: httpx.Response, now: float | None = None) -> tuple[float, str] | None:
    """Seconds for which the provider said it will refuse new requests, and the header
    that said it; `None` when it did not."""
    headers = response.headers
    # (`find`, not `in`: on CPython 3.11 `in` on bytes builds and drops a TypeError)
    if (
        response.status_code not in (429, 503)
        and b"\n".join([name for name, _ in headers.raw]).lower().find(b"ratelimit") < 0
    ):
        return None  # the common case, decided in one pass over the names
    now = time.time() if now is None else now
    found: tuple[float, str] | None = None

    def longer(seconds: float | None, why: str) -> None:
        nonlocal found
        if seconds is not None and seconds > 0 and (found is None or seconds > found[0]):
            found = (seconds, why)

    if response.status_code in (429, 503):
        longer(parse_retry_after(headers, now), "retry-after")
    for remaining, reset in _OPENAI:
        if _zero(headers.get(remaining)):
            raw = headers.get(reset)
            longer(parse_duration(raw) if raw else None, remaining)
    for remaining, reset in _ANTHROPIC:
        if _zero(headers.get(remaining)):
            raw = headers.get(reset)
            longer(_rfc3339(raw, now) if raw else None, remaining)
    if "ratelimit" in headers or "ratelimit-remaining" in headers:
        longer(_ietf(headers), "ratelimit")
    return found
