"""What every pooled client adds to its library's client, httpx's and httpx2's alike.

Mixins placed before the library's client class in the bases: the library's method is
next in the method order, so `super()` reaches it. Closing from outside (an SDK's
`close()`, `async with`) is ignored while the pool is open (the gate logs it once), and
new requests are refused while the pool closes.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from .._errors import PoolClosedError
from ._gate import Gate

__all__ = ["AsyncClientGuards", "SyncClientGuards"]

# `super()` below is the library's client, which the mixin does not name; mypy cannot
# see it, hence the `attr-defined` ignores.


class AsyncClientGuards:
    """The guards of a pooled async client."""

    gate: Gate
    label = "client"  # in the repr: "<httpool client 'openai'>"

    @property
    def provider_name(self) -> str:
        """The provider this client belongs to."""
        return self.gate.name

    async def send(self, request: Any, **kwargs: Any) -> Any:
        if self.gate.refusing:  # before the client's own "closed" check
            raise PoolClosedError(self.gate.name, "closing")
        return await super().send(request, **kwargs)  # type: ignore[misc]

    async def aclose(self) -> None:
        if not self.gate.refuse_close(self):
            await super().aclose()  # type: ignore[misc]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        if not self.gate.refuse_close(self):
            await super().__aexit__(exc_type, exc_value, traceback)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<httpool {self.label} {self.gate.name!r}>"


class SyncClientGuards:
    """The guards of a pooled sync client, for `def` routes."""

    gate: Gate
    label = "sync client"

    def close(self) -> None:
        if not self.gate.refuse_close(self):
            super().close()  # type: ignore[misc]

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        if not self.gate.refuse_close(self):
            super().__exit__(exc_type, exc_value, traceback)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<httpool {self.label} {self.gate.name!r}>"
