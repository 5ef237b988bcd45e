"""The client speed-ups give what httpx and httpx2 give; these fail if the libraries change."""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

import httpool
from httpool._clients import ProviderClients
from httpool._clients._speedups import MergedURLs, merge_url

pytestmark = pytest.mark.anyio

BASES = ["http://api.test", "https://api.test/v1", "https://api.test:8443/v1/", "http://h/a%20b/"]
URLS = [
    "/items",
    "items",
    "",
    "/",
    "/items?page=2",
    "a/b/../c",
    "/%7Euser/x y",
    "https://other.test/abs",
    "//cdn.test/x",
    "?q=1",
]

paths = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)


@pytest.mark.parametrize("library", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("url", URLS)
def test_merged_urls_are_the_librarys_own(library: Any, base: str, url: str) -> None:
    """`merge_url` gives what the library's own client builds, for each base and URL."""
    with library.Client(base_url=base) as plain:
        expected = plain.build_request("GET", url).url
    assert merge_url(library.Client(base_url=base).base_url, url) == expected


@given(path=paths)
def test_merged_urls_match_httpx_on_any_path(path: str) -> None:
    """For any text path, the merge equals httpx's own (a property test)."""
    with httpx.Client(base_url="https://api.test/v1") as plain:
        try:
            expected = plain.build_request("GET", path).url
        except httpx.InvalidURL:
            with pytest.raises(httpx.InvalidURL):
                merge_url(plain.base_url, path)
            return
        assert MergedURLs().get(plain.base_url, path) == expected


async def test_pooled_clients_merge_after_the_base_url_changes() -> None:
    """A new base URL is merged afresh, for both libraries' pooled clients."""
    for kind in (httpx.AsyncClient, httpx2.AsyncClient):
        provider = httpool.Provider("api", base_url="http://api.test/v1")
        client = ProviderClients(provider).get(kind)
        assert str(client.build_request("GET", "/items").url) == "http://api.test/v1/items"
        client.base_url = "http://api.test/v2"
        assert str(client.build_request("GET", "/items").url) == "http://api.test/v2/items"
        client.gate.owned = False
        await client.aclose()


def _echo(request: httpx.Request) -> httpx.Response:
    headers = {"set-cookie": "session=abc; Path=/"} if request.url.path == "/login" else {}
    return httpx.Response(200, headers=headers, json={"url": str(request.url)})


async def test_httpx_reads_cookies_through_the_public_property() -> None:
    """A Set-Cookie reaches the pooled client's store (httpx uses `client.cookies`)."""
    provider = httpool.Provider(
        "api", base_url="http://api.test", transport=httpx.MockTransport(_echo)
    )
    clients = ProviderClients(provider)
    client = clients.get(httpx.AsyncClient)
    await client.get("/plain")
    assert not client.cookies
    await client.get("/login")
    assert client.cookies["session"] == "abc"
    assert (await client.get("/next")).request.headers["cookie"] == "session=abc"
    client.cookies = {"other": "1"}
    assert client.build_request("GET", "/next").headers["cookie"] == "other=1"
    clients.gate.owned = False
    await client.aclose()
