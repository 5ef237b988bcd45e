"""Pooled clients: how a provider shows its transport, the kinds a pool makes, and a sync
client that an outside `with` block does not close."""

from __future__ import annotations

import logging

import httpx
import pytest

import httpool

from ..upstream import Upstream

pytestmark = pytest.mark.anyio


def provider() -> httpool.Provider:
    """Provider 'up' on a mock transport (nothing leaves the process)."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    return httpool.Provider("up", base_url="http://127.0.0.1:9", transport=transport)


def test_a_transport_instance_is_shown_by_its_type() -> None:
    """A provider's repr names a transport instance by its class, never its contents."""
    assert repr(provider()).endswith("http2=True, transport=<MockTransport>)")


async def test_an_unknown_kind_of_client_is_refused() -> None:
    """A kind the pool cannot make is a TypeError naming it and the kinds it can make."""
    async with httpool.ClientPool(provider()) as pool:
        with pytest.raises(TypeError, match="unknown kind of client 'nope' for provider 'up'"):
            pool.client("up", "nope")  # type: ignore[call-overload]


async def test_a_with_block_on_the_sync_client_leaves_it_open(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """`with pool.sync_client(...)` (as an SDK's sync client would do) does not close the
    pool's client while the pool is open, nor does `close()`: it is said once, and the
    client still works."""
    async with httpool.ClientPool(httpool.Provider("up", base_url=upstream.url)) as pool:
        client = pool.sync_client("up")
        with caplog.at_level(logging.WARNING, logger="httpool"):
            with client:
                pass
            client.close()  # refused too, and not said again
        assert not client.is_closed
        assert client.get("/x").json()["path"] == "/x"
    said = [r for r in caplog.records if "belongs to the pool" in r.getMessage()]
    assert len(said) == 1
    assert client.is_closed  # the pool closed it at shutdown


class _Stream:
    """A streamed response as the route clean-up sees it; its close may fail."""

    def __init__(self, fails: bool) -> None:
        self.is_closed = False
        self.fails = fails

    async def aclose(self) -> None:
        self.is_closed = True
        if self.fails:
            msg = "connection lost to https://user:pw@api.example/v1?key=sk-secret"
            raise httpx.ReadError(msg)


async def test_route_clean_up_closes_every_stream_though_one_close_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stream whose close fails does not keep the route's other streams open; the
    failure is logged by its type, not its message (which may hold a URL)."""
    from httpool._clients import OpenStreams

    failing, other = _Stream(fails=True), _Stream(fails=False)
    streams = OpenStreams()
    streams.track(failing)
    streams.track(other)
    with caplog.at_level(logging.WARNING, logger="httpool"):
        await streams.close_all()
    assert failing.is_closed
    assert other.is_closed
    assert "ReadError" in caplog.text
    assert "sk-secret" not in caplog.text
    assert "api.example" not in caplog.text
