"""Checks of a `Provider`'s policy fields, and the wrapping of its transport."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import httpx

from .._errors import ConfigError
from ._breaker import Breaker
from ._ratelimit import RateLimit
from ._retry import Retry

if TYPE_CHECKING:
    from .._config import Provider

__all__ = ["has_policy", "validate_policy", "wrap_policy"]


def validate_policy(p: Provider) -> dict[str, Any]:
    """The normalised `retry`, `max_concurrency`, `rate_limit` and `breaker` of `p`:
    `Retry`/`RateLimit`/`Breaker` objects or `None`. Raises `ConfigError` naming the field."""
    where = f"Provider({p.name!r})"
    return {
        "retry": _switch(where, "retry", p.retry, Retry),
        "max_concurrency": _concurrency(where, p.max_concurrency),
        "rate_limit": _rate_limit(where, p.rate_limit),
        "breaker": _switch(where, "breaker", p.breaker, Breaker),
    }


def _switch(where: str, field: str, value: object, kind: type[Any]) -> Any:
    if value is None or value is False:
        return None
    if value is True:
        return kind()
    if isinstance(value, kind):
        return value
    msg = (
        f"{where}.{field}: expected True, False or httpool.{kind.__name__}(...), "
        f"got {type(value).__name__}"
    )
    raise ConfigError(msg)


def _concurrency(where: str, value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        msg = f"{where}.max_concurrency: expected a whole number >= 1 or None, got {value!r}"
        raise ConfigError(msg)
    return value


def _rate_limit(where: str, value: object) -> RateLimit | None:
    if value is None:
        return None
    if isinstance(value, RateLimit):
        return value
    if isinstance(value, str):
        try:
            return RateLimit(value)
        except ValueError as exc:
            msg = f"{where}.rate_limit: {exc}"
            raise ConfigError(msg) from None
    msg = (
        f"{where}.rate_limit: expected a str such as '500/minute' or "
        f"httpool.RateLimit(...), got {type(value).__name__}"
    )
    raise ConfigError(msg)


def has_policy(p: Provider) -> bool:
    """Whether any of the provider's policy pieces is on."""
    return any(v is not None for v in (p.retry, p.max_concurrency, p.rate_limit, p.breaker))


def wrap_policy(p: Provider, transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
    """`transport` wrapped in the provider's policy, or unchanged when it has none."""
    if not has_policy(p):
        return transport
    from ._transport import PolicyTransport

    retry = p.retry
    if isinstance(retry, Retry) and p.retry_post and not retry.retry_post:
        retry = dataclasses.replace(retry, retry_post=True)  # the provider allows POSTs again
    return PolicyTransport(
        transport,
        p.name,
        retry=retry,  # type: ignore[arg-type]
        max_concurrency=p.max_concurrency,
        rate_limit=p.rate_limit,  # type: ignore[arg-type]
        breaker=p.breaker,  # type: ignore[arg-type]
    )
