"""`SyncPolicyTransport`: a provider's policy for its sync clients, on the same state.

A sync client (`pool.sync_client(...)`, for `def` routes) runs in worker threads, while
the provider's policy state (the breaker, the retry budget, the concurrency slots, the
rate limit and its Redis lease, the provider's announced reset, the counters) lives on
the pool's event loop and is not thread-safe. So each step that reads or changes that
state runs on the loop, through anyio's portal from the thread (`anyio.from_thread`),
and the request itself is sent in the thread by the sync transport: sync and async
clients of one provider share one limit, one breaker and one budget, exactly.

The price is a few hops to the loop per request (tens of microseconds each), and one
rule: a sync client with a policy cannot be called on the event loop's own thread (it
would wait on the loop it blocks); it says so instead of hanging.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio.from_thread
import httpx

from ._errors import CircuitOpenError, LimitTimeout
from ._transport import _BREAKER_ERRORS, _CONNECT_ERRORS, PolicyTransport

__all__ = ["SyncPolicyTransport"]


def _httpx_view(request: Any) -> tuple[httpx.Request, bool]:
    return request, isinstance(request.stream, httpx.ByteStream)


class SyncPolicyTransport(httpx.BaseTransport):
    """The policy of `policy` (the provider's async `PolicyTransport`) around the sync
    transport `inner`.

    The defaults suit httpx; httpx2's sync client passes its own:

    Arguments:
        view: the request as the policy reads it (an `httpx.Request`), and whether its
            body can be sent again.
        map_error: the error to raise instead of the policy's own (`LimitTimeout`,
            `CircuitOpenError`, which are httpx errors), or `None` to raise those.
        stream_base: the library's sync byte stream class, for response bodies that
            hold a concurrency slot until they are closed.
        connect_errors: the inner transport's errors on which nothing was sent.
        breaker_errors: the inner transport's errors that count against the breaker.
    """

    def __init__(
        self,
        inner: Any,
        policy: PolicyTransport,
        *,
        view: Callable[[Any], tuple[httpx.Request, bool]] = _httpx_view,
        map_error: Callable[[httpx.HTTPError, Any], Exception] | None = None,
        stream_base: type = httpx.SyncByteStream,
        connect_errors: tuple[type[BaseException], ...] = _CONNECT_ERRORS,
        breaker_errors: tuple[type[BaseException], ...] = _BREAKER_ERRORS,
    ) -> None:
        self.inner, self.policy = inner, policy
        self._view, self._map_error = view, map_error
        self._permit = _permit_class(stream_base)
        self._connect_errors, self._breaker_errors = connect_errors, breaker_errors

    def handle_request(self, request: Any) -> Any:
        """Send `request` through the provider's limits, retrying what the policy allows."""
        view, replayable = self._view(request)
        try:
            return self._send(request, view, replayable)
        except (LimitTimeout, CircuitOpenError) as exc:
            if self._map_error is None:
                raise
            raise self._map_error(exc, request) from exc

    def _send(self, request: Any, view: httpx.Request, replayable: bool) -> Any:
        """Two calls on the loop per attempt: `enter` before it is sent, `finish` after."""
        policy = self.policy
        deadline = None
        attempt = 1
        while True:
            trial, release, started = self._on_loop(
                functools.partial(policy.enter, first=attempt == 1), view
            )
            if attempt == 1:
                deadline = started
            try:
                response = self.inner.handle_request(request)
            except BaseException as exc:
                counts = isinstance(exc, self._breaker_errors)
                self._on_loop_sync(policy.send_failed, trial, counts, release)
                if not isinstance(exc, self._connect_errors) or policy.retry is None:
                    raise
                wait = self._on_loop_sync(policy.connect_wait, attempt, deadline)
                if wait is None:
                    raise
                time.sleep(wait)
                attempt += 1
                continue
            wait = self._on_loop(
                functools.partial(policy.finish, replayable=replayable),
                view,
                response,
                trial,
                attempt,
                deadline,
            )
            if release is not None:
                if response.is_closed:
                    self._on_loop_sync(release)
                else:
                    response.stream = self._permit(
                        response.stream, functools.partial(self._on_loop_sync, release)
                    )
            if wait is None:
                return response
            response.close()
            time.sleep(wait)
            attempt += 1

    def _token(self) -> Any:
        policy = self.policy
        if policy.loop_token is None:
            msg = (
                f"provider {policy.name!r}: its policy (retry, limits, breaker) lives on "
                "the pool's event loop, which has not run it yet; open the pool "
                "(`async with pool`, or the app's lifespan) before using its sync client"
            )
            raise RuntimeError(msg)
        if threading.get_ident() == policy.loop_thread:
            msg = (
                f"provider {policy.name!r}: a sync client with a policy (retry, limits, "
                "breaker) cannot be called on the event loop's thread, which its limits "
                "need; use the async client there (pool.client), or call the sync one from "
                "a thread (a `def` route, anyio.to_thread.run_sync)"
            )
            raise RuntimeError(msg)
        return policy.loop_token

    def _on_loop(self, func: Callable[..., Any], *args: Any) -> Any:
        """Await `func(*args)` on the pool's event loop, from this thread."""
        return anyio.from_thread.run(func, *args, token=self._token())

    def _on_loop_sync(self, func: Callable[..., Any], *args: Any) -> Any:
        """Call `func(*args)` on the pool's event loop, from this thread."""
        return anyio.from_thread.run_sync(func, *args, token=self._token())

    def close(self) -> None:
        """Close the sync transport (the policy's state closes with the async engine)."""
        self.inner.close()


_permits: dict[type, type] = {}


def _permit_class(base: type) -> type:
    """A response body of `base`'s kind that releases a concurrency slot when closed."""
    made = _permits.get(base)
    if made is None:

        class _SyncPermit(base):  # type: ignore[misc]
            """A response body that gives its concurrency slot back when it is closed."""

            def __init__(self, stream: Any, release: Callable[[], None]) -> None:
                self._stream = stream
                self._release: Callable[[], None] | None = release

            def __iter__(self) -> Iterator[bytes]:
                yield from self._stream

            def close(self) -> None:
                release, self._release = self._release, None
                try:
                    self._stream.close()
                finally:
                    if release is not None:
                        release()

        made = _permits[base] = _SyncPermit
    return made
