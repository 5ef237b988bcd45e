"""The exceptions httpool raises: each message names the provider or field and the next step."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "OriginNotAllowedError",
    "PoolClosedError",
    "UnknownProviderError",
]


class ConfigError(ValueError):
    """A provider or pool was configured with a value that cannot work.

    Raised at construction or startup, never at request time. The message names the
    field (for example ``Provider('openai').base_url``) and what to change.
    """


class UnknownProviderError(LookupError):
    """A provider name was asked for that the pool does not know."""

    def __init__(self, name: str, registered: Iterable[str]) -> None:
        self.name = name
        self.registered = tuple(sorted(registered))
        listed = ", ".join(self.registered) or "none"
        msg = (
            f"no provider {name!r}; registered: {listed}. "
            f"Add httpool.Provider({name!r}, base_url=...) to httpool.lifespan(...) "
            "or ClientPool(...), or fix the name."
        )
        super().__init__(msg)


class PoolClosedError(RuntimeError):
    """The pool is not open: it was closed, is closing, or was never opened."""

    def __init__(self, name: str | None, state: str) -> None:
        self.name = name
        self.state = state
        what = f"client {name!r}" if name is not None else "a client"
        msg = (
            f"cannot use {what}: the httpool pool is {state}. Clients live between the "
            "app's startup and shutdown; get them inside a request (httpool.client(...)) "
            "or inside `async with ClientPool(...)`."
        )
        super().__init__(msg)


class OriginNotAllowedError(ValueError):
    """A provider's client was asked to send its credentials to another origin."""

    def __init__(self, name: str, origin: str, allowed: Iterable[str]) -> None:
        self.name = name
        self.origin = origin
        self.allowed = tuple(allowed)
        msg = (
            f"provider {name!r} refused a request to {origin}: its headers and auth are "
            f"only sent to {', '.join(self.allowed)}. Use a relative URL, or list the origin "
            f"in httpool.Provider({name!r}, allowed_origins=[...])."
        )
        super().__init__(msg)
