"""`ClientPool`: the named clients of one app run, their lifecycle and their stats."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, overload

import anyio
import httpx

from ._budget import warn_unsplit_workers
from ._clients import ProviderClients, kind_label
from ._config import Provider
from ._engine._proxy_transports import proxy_labels
from ._errors import ConfigError, PoolClosedError, UnknownProviderError
from ._secret import install_log_redaction, redact_url
from ._shutdown import close_clients, drain
from ._warmup import warm_up

if TYPE_CHECKING:
    import httpx2

__all__ = ["ClientPool", "PoolState"]

logger = logging.getLogger("httpool")


class PoolState(enum.Enum):
    """Where a pool is in its life: unopened → open → closing → closed (→ open again)."""

    UNOPENED = "unopened"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class ClientPool:
    """Named, long-lived `httpx.AsyncClient`s, one per provider.

    ```python
    async with httpool.ClientPool(httpool.Provider("openai", base_url=...)) as pool:
        response = await pool.client("openai").post("/chat/completions", json=...)
    ```

    Registered providers' clients are made when the pool opens, inside the running event
    loop, so `client(name)` is a dictionary look-up. A pool may be opened again after it
    closed (a second `TestClient` run does that): each opening makes new clients bound to
    the loop that is running then.

    Arguments:
        providers: the registered providers; names must be unique.
        drain_timeout: at close, seconds to wait for requests in flight to finish
            (new requests are refused with `PoolClosedError` meanwhile).
        close_timeout: seconds that closing the clients may take in all, after the
            drain; a client whose close hangs longer is abandoned with a warning, so
            shutdown ends within `drain_timeout + close_timeout`.
    """

    def __init__(
        self, *providers: Provider, drain_timeout: float = 5.0, close_timeout: float = 5.0
    ) -> None:
        registered: dict[str, Provider] = {}
        for provider in providers:
            if not isinstance(provider, Provider):
                msg = f"ClientPool() takes httpool.Provider objects, got {provider!r}"
                raise TypeError(msg)
            if provider.name in registered:
                msg = f"ClientPool(): provider {provider.name!r} is registered twice"
                raise ConfigError(msg)
            registered[provider.name] = provider
        for field, value in (("drain_timeout", drain_timeout), ("close_timeout", close_timeout)):
            if not value >= 0:  # also refuses NaN
                msg = f"ClientPool({field}={value!r}): must be a number of seconds >= 0"
                raise ConfigError(msg)
        self._drain_timeout = float(drain_timeout)
        self._providers = registered
        self._close_timeout = close_timeout
        self._state = PoolState.UNOPENED
        self._lock = threading.Lock()  # guards creation; never held across an await
        # The default kind's clients (the look-up of `client(name)`), and every
        # provider's clients of all kinds over its shared gate and engine.
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._sets: dict[str, ProviderClients] = {}
        self._made_before_failure: dict[str, ProviderClients] = {}

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def state(self) -> PoolState:
        """The pool's lifecycle state."""
        return self._state

    async def open(self) -> None:
        """Make every registered provider's client, bound to the running event loop.

        Providers with `warmup=N` then open N connections, concurrently.
        """
        if self._state in (PoolState.OPEN, PoolState.CLOSING):
            msg = f"ClientPool.open(): the pool is already {self._state.value}"
            raise RuntimeError(msg)
        install_log_redaction()
        warn_unsplit_workers()
        try:
            self._make_clients()
        except BaseException:
            # A client could not be made: the pool is as it was; close the ones made.
            await close_clients(self._made_before_failure, self._close_timeout)
            self._made_before_failure = {}
            raise
        try:
            await warm_up(
                self._providers,
                {name: c.clients[c.default_kind] for name, c in self._sets.items()},
            )
        except BaseException:
            await self.aclose()
            raise
        logger.debug("httpool pool open: %s", ", ".join(self._providers))

    def _make_clients(self) -> None:
        """Make every registered provider's client and open the pool; on failure leave
        the pool in its state before (it can open again) and the clients made so far in
        `_made_before_failure`."""
        with self._lock:
            before = self._state
            self._clients, self._sets = {}, {}
            self._state = PoolState.OPEN
            try:
                for provider in self._providers.values():
                    self._create(provider)
            except BaseException:
                self._made_before_failure = self._sets
                self._clients, self._sets = {}, {}
                self._state = before
                raise

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every client concurrently, within `close_timeout` seconds in all.

        Network errors while closing (`httpx.HTTPError`, `OSError`) are logged at
        warning with the provider's name; any other error is raised once every client
        was closed, all of them together in an `ExceptionGroup`. Closing twice is fine.
        """
        with self._lock:
            if self._state is not PoolState.OPEN:
                self._state = PoolState.CLOSED if self._state is PoolState.UNOPENED else self._state
                return
            self._state = PoolState.CLOSING
            sets, self._sets, self._clients = self._sets, {}, {}
        try:
            with anyio.CancelScope(shield=True):
                await drain(sets, self._drain_timeout)
            await close_clients(sets, self._close_timeout)
        finally:
            self._state = PoolState.CLOSED
            logger.debug("httpool pool closed")

    async def close_all(self) -> None:
        """Close every client concurrently; the same as `aclose()`."""
        await self.aclose()

    async def close_client(self, name: str) -> bool:
        """Close one provider's clients; `False` when it had none.

        A registered provider's client is made again by the next `get_client(name)`.
        """
        with self._lock:
            self._clients.pop(name, None)
            clients = self._sets.pop(name, None)
        if clients is None:
            return False
        await close_clients({name: clients}, self._close_timeout)
        return True

    # -- clients -------------------------------------------------------------------------

    @overload
    def client(self, name: str) -> httpx.AsyncClient: ...
    @overload
    def client(self, name: str, kind: type[httpx.AsyncClient]) -> httpx.AsyncClient: ...
    @overload
    def client(self, name: str, kind: type[httpx2.AsyncClient]) -> httpx2.AsyncClient: ...
    def client(self, name: str, kind: type[Any] = httpx.AsyncClient) -> Any:
        """The live client of provider `name`, of `kind`: `httpx.AsyncClient` (the
        default, a plain look-up, no await, no lock) or `httpx2.AsyncClient` (made on
        first use; needs `httpool[httpx2]`). All kinds of a provider share its engine:
        connections, budget, stats, credentials pinned to its origins.
        """
        if kind is httpx.AsyncClient:
            client = self._clients.get(name)
            if client is not None:
                return client
        return self._of_kind(name, kind, registered_only=False)

    def _of_kind(self, name: str, kind: type[Any], *, registered_only: bool) -> Any:
        with self._lock:
            clients = self._sets.get(name)
            if clients is None or (registered_only and name not in self._providers):
                if registered_only and self._state is PoolState.OPEN:
                    raise UnknownProviderError(name, self._providers)
                raise self._missing(name)
            return clients.get(kind)

    async def get_client(self, name: str, **overrides: Any) -> httpx.AsyncClient:
        """The client of `name`, made now if there is none (an unregistered name too).

        `overrides` (`max_connections`, `max_keepalive_connections`, `keepalive_expiry`,
        `connect_timeout`, `read_timeout`, `write_timeout`, `pool_timeout`, `http2`)
        apply when the client is made. Clients are cached by name: asking again with
        other overrides returns the existing client and logs a warning.
        """
        return self.get_client_sync(name, **overrides)

    def get_client_sync(self, name: str, **overrides: Any) -> httpx.AsyncClient:
        """`get_client` for plain threads and sync code: thread-safe, makes one client."""
        client = self._clients.get(name)
        if client is not None and not overrides:
            return client
        base = self._providers.get(name) or Provider(name)
        wanted = base.with_overrides(**overrides)
        with self._lock:
            if self._state is not PoolState.OPEN:
                raise PoolClosedError(name, self._state.value)
            existing = self._sets.get(name)
            if existing is None:
                self._create(wanted)
                existing = self._sets[name]
            elif not overrides:
                return existing.get(httpx.AsyncClient)  # type: ignore[no-any-return]
            client = existing.get(httpx.AsyncClient)
        if overrides and wanted != existing.provider:
            logger.warning(
                "httpool client %r already exists; overrides %s were not applied "
                "(clients are cached by name: close_client(%r) first to change them)",
                name,
                ", ".join(sorted(overrides)),
                name,
                extra={"provider": name},
            )
        return client  # type: ignore[no-any-return]

    def _create(self, provider: Provider) -> httpx.AsyncClient:
        """Make `provider`'s clients, its default kind now (the lock is held)."""
        clients = ProviderClients(provider)
        self._sets[provider.name] = clients
        kind = clients.default_kind
        client = clients.get(kind)
        if kind is httpx.AsyncClient:
            self._clients[provider.name] = client
        return client  # type: ignore[no-any-return]

    @overload
    def sync_client(self, name: str) -> httpx.Client: ...
    @overload
    def sync_client(self, name: str, kind: type[httpx.Client]) -> httpx.Client: ...
    @overload
    def sync_client(self, name: str, kind: type[httpx2.Client]) -> httpx2.Client: ...
    def sync_client(self, name: str, kind: type[Any] = httpx.Client) -> Any:
        """A thread-safe sync client of registered provider `name`, for `def` routes:
        `httpx.Client` (the default) or `httpx2.Client`."""
        if self._state is not PoolState.OPEN:
            raise PoolClosedError(name, self._state.value)
        return self._of_kind(name, kind, registered_only=True)

    def _missing(self, name: str) -> Exception:
        if self._state is not PoolState.OPEN:
            return PoolClosedError(name, self._state.value)
        if name in self._providers:  # registered, but its client was closed
            msg = (
                f"provider {name!r} has no open client: close_client({name!r}) closed it; "
                f"`await pool.get_client({name!r})` makes a new one"
            )
            return LookupError(msg)
        return UnknownProviderError(name, self._providers.keys() | self._sets.keys())

    # -- introspection -------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the registered providers and of clients made by `get_client`."""
        return tuple(dict.fromkeys([*self._providers, *self._sets]))

    @property
    def providers(self) -> dict[str, Provider]:
        """The registered providers by name (a copy)."""
        return dict(self._providers)

    def has_client(self, name: str) -> bool:
        """Whether live clients exist for `name`."""
        return name in self._sets

    def stats(self) -> dict[str, dict[str, Any]]:
        """A JSON-ready dict per provider: settings and the transport's counters."""
        out: dict[str, dict[str, Any]] = {}
        for name, clients in list(self._sets.items()):
            provider = clients.provider
            transport = clients.base
            entry: dict[str, Any] = {
                "base_url": redact_url(provider.base_url) if provider.base_url else None,
                "transport": getattr(transport, "transport_name", type(transport).__name__),
                "proxy": proxy_labels(transport),
                "http2": provider.http2,
                "max_connections": provider.limits.max_connections,
                "closed": all(c.is_closed for c in clients.clients.values()),
                "clients": sorted(kind_label(k) for k in clients.clients),
            }
            transport_stats = getattr(transport, "stats", None)
            if callable(transport_stats):
                entry.update(transport_stats())
            # Counted by the provider's transport wrapper, for every transport and kind.
            entry["requests_in_flight"] = clients.gate.busy
            out[name] = entry
        return out

    @contextlib.contextmanager
    def override(self, name: str, **changes: Any) -> Iterator[Provider]:
        """Change registered provider `name` for the pool's next opening (tests use it).

        `changes` are `Provider` fields, e.g. `transport=httpx.MockTransport(...)`. The
        original provider is back when the block ends. Refused while the pool is open.
        """
        with self._lock:
            if self._state in (PoolState.OPEN, PoolState.CLOSING):
                msg = (
                    f"ClientPool.override({name!r}): the pool is {self._state.value}; "
                    "override providers before the app starts"
                )
                raise RuntimeError(msg)
            if name not in self._providers:
                raise UnknownProviderError(name, self._providers)
            original = self._providers[name]
            replaced = self._providers[name] = dataclasses.replace(original, **changes)
        try:
            yield replaced
        finally:
            with self._lock:
                if self._providers.get(name) is replaced:
                    self._providers[name] = original

    def __repr__(self) -> str:
        return f"<httpool.ClientPool {self._state.value} providers={list(self.names)}>"

    @classmethod
    def _from(cls, items: Iterable[Provider | ClientPool], **options: float) -> ClientPool:
        """One pool from providers, or the single pool given (which keeps its options)."""
        items = list(items)
        pools = [i for i in items if isinstance(i, ClientPool)]
        if pools and len(items) > 1:
            msg = "httpool.lifespan() takes providers or one ClientPool, not both"
            raise ConfigError(msg)
        return pools[0] if pools else cls(*items, **options)  # type: ignore[arg-type]
