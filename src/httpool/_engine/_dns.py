"""A DNS cache for the engine, and Happy Eyeballs over the addresses it gives.

`DNSCache` resolves a (host, port) once per TTL and shares the answer across the
connections opened meanwhile: a burst that opens 50 connections makes one lookup (the
others wait for it). A failed lookup is not kept. With the pool's `max_lifetime`, old
connections retire, and the new ones look the name up again once its TTL has passed,
so a long-busy pool follows load-balancer changes.

`happy_eyeballs` connects to those addresses as RFC 8305 asks: families interleaved
(the first family the resolver returned first), a new attempt started every `delay`
seconds or as soon as the previous one fails, the first to connect wins and the others
are closed. The engine connects every host name this way, with the cache on or off and
on any loop: asyncio's own race (`create_connection(happy_eyeballs_delay=...)`) takes no
list of addresses, and on Python 3.11 it can leave a losing socket unclosed (seen as a
`ResourceWarning` under load); uvloop has no race at all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["HAPPY_EYEBALLS_DELAY", "Address", "DNSCache", "Resolver", "happy_eyeballs"]

HAPPY_EYEBALLS_DELAY = 0.25  # RFC 8305's recommended "Connection Attempt Delay"
MAX_NAMES = 1024  # cached names kept at most (the oldest go first)

#: (family, sockaddr): what a resolver gives for one address.
Address = tuple[int, tuple[Any, ...]]
Resolver = Callable[[str, int], Awaitable[list[Address]]]


async def system_resolver(host: str, port: int) -> list[Address]:
    """The system's resolver (`getaddrinfo` in asyncio's executor), TCP addresses only."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


def is_ip(host: str) -> bool:
    """Whether `host` is an IP address literal (nothing to resolve)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class DNSCache:
    """Answers kept for `ttl` seconds, one lookup at a time per name."""

    def __init__(self, ttl: float, resolver: Resolver | None = None) -> None:
        self.ttl = ttl
        self._resolve = resolver or system_resolver
        self._answers: dict[tuple[str, int], tuple[float, list[Address]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Task[list[Address]]] = {}
        self.lookups = 0

    async def lookup(self, host: str, port: int) -> list[Address]:
        """The addresses of `host`, from the cache while fresh."""
        key = (host, port)
        answer = self._answers.get(key)
        if answer is not None and answer[0] > time.monotonic():
            return answer[1]
        task = self._pending.get(key)
        if task is None:
            self.lookups += 1
            task = asyncio.ensure_future(self._resolve(host, port))
            self._pending[key] = task
            task.add_done_callback(lambda done: self._store(key, done))
        return await asyncio.shield(task)  # a cancelled caller leaves the lookup to others

    def _store(self, key: tuple[str, int], task: asyncio.Task[list[Address]]) -> None:
        self._pending.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return  # not kept; retrieved, so an error nobody awaited is not logged
        addresses = task.result()
        if addresses and self.ttl > 0:
            if len(self._answers) >= MAX_NAMES:
                self._answers.pop(next(iter(self._answers)))
            self._answers[key] = (time.monotonic() + self.ttl, addresses)


def interleave(addresses: list[Address]) -> list[Address]:
    """RFC 8305 section 4: alternate the families, starting with the first one given."""
    if not addresses:
        return []
    first = addresses[0][0]
    ours = [a for a in addresses if a[0] == first]
    others = [a for a in addresses if a[0] != first]
    out: list[Address] = []
    for i in range(max(len(ours), len(others))):
        out += ours[i : i + 1] + others[i : i + 1]
    return out


async def _attempt(address: Address, local_address: str | None) -> socket.socket:
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)  # noqa: FBT003 - the socket API
        if local_address is not None:
            sock.bind((local_address, 0))
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def happy_eyeballs(
    addresses: list[Address], local_address: str | None = None, delay: float = HAPPY_EYEBALLS_DELAY
) -> socket.socket:
    """A socket connected to the first of `addresses` that answers (staggered attempts)."""
    ordered = interleave(addresses)
    if local_address is not None:  # only addresses of the local address's family
        family = socket.AF_INET6 if ":" in local_address else socket.AF_INET
        ordered = [a for a in ordered if a[0] == family]
    if not ordered:
        msg = "no address to connect to"
        raise OSError(msg)
    if len(ordered) == 1:
        return await _attempt(ordered[0], local_address)
    return await _race(ordered, local_address, delay)


async def _race(ordered: list[Address], local_address: str | None, delay: float) -> socket.socket:
    """Staggered attempts in order; the first socket to connect, or the failures."""
    queue = iter(ordered)
    running: set[asyncio.Task[socket.socket]] = set()
    errors: list[BaseException] = []
    try:
        start_next = True
        while True:
            if start_next:
                following = next(queue, None)
                if following is not None:
                    running.add(asyncio.ensure_future(_attempt(following, local_address)))
            if not running:
                break
            more = len(running) + len(errors) < len(ordered)
            done, _ = await asyncio.wait(
                running, timeout=delay if more else None, return_when=asyncio.FIRST_COMPLETED
            )
            start_next = True  # after a failure at once, else after `delay`
            for task in done:
                running.discard(task)
                error = task.exception()
                if error is None:
                    return task.result()
                errors.append(error)
    finally:
        for task in running:
            task.cancel()
        for result in await asyncio.gather(*running, return_exceptions=True):
            if isinstance(result, socket.socket):
                result.close()  # one that connected too, or while we were done
    messages = list(dict.fromkeys(str(e) for e in errors))
    if len(messages) == 1:
        raise errors[0]
    msg = f"all {len(errors)} addresses failed: {'; '.join(messages)}"
    raise OSError(msg)
