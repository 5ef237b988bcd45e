"""`ProviderClient`'s shortcuts keep httpx's behaviour: cookies and merged URLs."""

from __future__ import annotations

import httpx
import pytest

import httpool
from httpool._clients import build_async_client

pytestmark = pytest.mark.anyio


def _echo(request: httpx.Request) -> httpx.Response:
    headers = {"set-cookie": "session=abc; Path=/"} if request.url.path == "/login" else {}
    return httpx.Response(200, headers=headers, json={"url": str(request.url)})


async def test_cookies_set_by_a_response_are_sent_again() -> None:
    """A Set-Cookie is stored and sent on later requests; answers without one store none."""
    provider = httpool.Provider(
        "api", base_url="http://api.test", transport=httpx.MockTransport(_echo)
    )
    client, _ = build_async_client(provider)
    async with client:
        await client.get("/plain")
        assert not client.cookies
        await client.get("/login")
        assert client.cookies["session"] == "abc"
        client.cookies = {"other": "1"}
        request = client.build_request("GET", "/next")
        assert request.headers["cookie"] == "other=1"


async def test_merged_urls_follow_a_new_base_url() -> None:
    """A relative URL is merged with the current base URL, also after it changes."""
    provider = httpool.Provider(
        "api", base_url="http://api.test/v1", transport=httpx.MockTransport(_echo)
    )
    client, _ = build_async_client(provider)
    async with client:
        first = await client.get("/items", params={"page": 2})
        assert first.json()["url"] == "http://api.test/v1/items?page=2"
        again = await client.get("/items")
        assert again.json()["url"] == "http://api.test/v1/items"
        client.base_url = httpx.URL("http://api.test/v2")
        moved = await client.get("/items")
        assert moved.json()["url"] == "http://api.test/v2/items"
