"""Speed-ups of the client libraries, measured, kept in this one place.

Both use public API only, and `tests/clients/test_speedups.py` fails if the libraries
stop behaving as they assume. Measured per request on a mock transport (client
overhead only, `bench/client_micro.py`): 114 µs without them, 50 µs with them; the
two account for about two thirds of a pooled httpx client's own cost.

- Merged URLs: a client merges each string URL with its base URL by parsing both
  (about 40 % of the cost). `MergedURLs` remembers the merge for the few string URLs a
  provider's client sends (paths such as "/chat/completions"), for the current base URL.
- Cookies: httpx 0.28 parses every response for cookies through `http.cookiejar`,
  even when it sets none (about 45 %). `SkipEmptyCookies` does that only when the
  response has a Set-Cookie header (httpx2 does so itself). httpx reads the store
  through the public `cookies` property, which the pooled client overrides.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["CookiesOnlyWhenSet", "MergedURLs", "RememberedURLs", "SkipEmptyCookies", "merge_url"]

CACHE_SIZE = 256  # merged URLs kept per client


def merge_url(base_url: Any, url: str) -> Any:
    """`url` on `base_url` as httpx and httpx2 merge it (`base_url` ends with "/")."""
    merged = type(base_url)(url)
    if merged.is_relative_url:
        return base_url.copy_with(raw_path=base_url.raw_path + merged.raw_path.lstrip(b"/"))
    return merged


class MergedURLs:
    """The merged URL of each string URL, for one base URL at a time."""

    __slots__ = ("_base", "_urls")

    def __init__(self) -> None:
        self._base: object = None
        self._urls: dict[str, Any] = {}

    def get(self, base_url: Any, url: str) -> Any:
        """The URL a client with `base_url` sends `url` to."""
        if base_url is not self._base:  # the base URL was set again
            self._urls.clear()
            self._base = base_url
        merged = self._urls.get(url)
        if merged is None:
            merged = merge_url(base_url, url)
            if len(self._urls) < CACHE_SIZE:
                self._urls[url] = merged
        return merged


class SkipEmptyCookies(httpx.Cookies):
    """httpx's cookie store, which parses a response only when it sets cookies."""

    def extract_cookies(self, response: httpx.Response) -> None:
        for name, _ in response.headers.raw:
            if name.lower().startswith(b"set-cookie"):  # Set-Cookie or Set-Cookie2
                super().extract_cookies(response)
                return


# The two mixins below put the speed-ups on a pooled client; each goes before the
# library's client class in the bases, so `super()` is that client (which mypy cannot
# see: hence the `misc` ignores). Their state lives on the client under names of
# httpool's own (`httpool_urls`, `httpool_jar`), never the library's.


class RememberedURLs:
    """A client whose `build_request` remembers the merge of each string URL."""

    base_url: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.httpool_urls = MergedURLs()
        super().__init__(*args, **kwargs)

    def build_request(self, method: str, url: Any, **kwargs: Any) -> Any:
        """The library's `build_request`, with the merge of a string URL remembered."""
        if isinstance(url, str):
            url = self.httpool_urls.get(self.base_url, url)
        return super().build_request(method, url, **kwargs)  # type: ignore[misc]


class CookiesOnlyWhenSet:
    """An httpx client whose cookie store parses only responses that set cookies.

    httpx reads and writes the store through the public `cookies` property, which this
    overrides; `tests/clients/test_speedups.py` fails if httpx stops doing so.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.httpool_jar = SkipEmptyCookies(kwargs.get("cookies"))
        super().__init__(*args, **kwargs)

    @property
    def cookies(self) -> httpx.Cookies:
        """The client's cookie store (one that skips responses setting no cookie)."""
        return self.httpool_jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self.httpool_jar = SkipEmptyCookies(cookies)
