"""Proxy configuration: `Provider(proxy=..., trust_env=...)`, the environment, masking."""

from __future__ import annotations

import logging

import httpx
import pytest

import httpool
from httpool._engine._proxy import ProxyConf, Routes, masked
from httpool._engine._proxy_config import build_routes, parse_proxy, proxy_label

ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable of the machine leaks into these tests."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def route_of(routes: Routes, text: str) -> ProxyConf | None:
    """The proxy `routes` picks for a request to the URL `text`."""
    url = httpx.URL(text)
    port = url.port or (443 if url.raw_scheme == b"https" else 80)
    return routes.route(url.raw_scheme, url.raw_host, port)


def route(url: str) -> str | None:
    routes = build_routes(None, trust_env=True)
    if routes is None:
        return None
    proxy = route_of(routes, url)
    return None if proxy is None else str(proxy.url)


def test_provider_takes_a_proxy_and_masks_its_credentials() -> None:
    """A proxy URL with user-info is accepted and shown masked in the provider's repr."""
    provider = httpool.Provider(
        "p", base_url="https://api.example.com", proxy="http://alice:s3cret-pw@proxy:3128"
    )
    shown = repr(provider)
    assert "s3cret-pw" not in shown
    assert "alice" not in shown
    assert "proxy='http://***@proxy:3128'" in shown


@pytest.mark.parametrize(
    "value",
    [
        "ftp://user:s3cret-pw@proxy:21",
        "socks6://user:s3cret-pw@proxy:1080",
        "http://user:s3cret-pw@",
        42,
    ],
)
def test_a_bad_proxy_is_a_config_error_naming_the_field(value: object) -> None:
    """A proxy that cannot work fails at construction, naming the field, never the password."""
    with pytest.raises(httpool.ConfigError, match=r"Provider\('p'\)\.proxy") as info:
        httpool.Provider("p", base_url="https://api.example.com", proxy=value)  # type: ignore[arg-type]  # bad on purpose
    assert "s3cret-pw" not in str(info.value)


def test_proxy_may_be_a_secret_or_an_httpx_proxy() -> None:
    """A `Secret` URL and an `httpx.Proxy` (with auth and headers) are both taken."""
    secret = parse_proxy(httpool.Secret("socks5h://bob:pw-in-secret@10.0.0.1:1080"))
    assert secret.scheme == "socks5h"
    assert secret.auth == ("bob", "pw-in-secret")
    assert secret.label == "socks5h://***@10.0.0.1:1080"
    given = parse_proxy(httpx.Proxy("http://carol:pw2@proxy:8080", headers={"X-Team": "a"}))
    assert given.auth == ("carol", "pw2")
    assert (b"X-Team", b"a") in given.headers
    assert any(k == b"Proxy-Authorization" for k, _ in given.headers)
    assert "pw2" not in repr(given)


def test_environment_proxies_follow_the_scheme() -> None:
    """HTTP_PROXY serves http URLs, HTTPS_PROXY https URLs, ALL_PROXY the rest."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HTTP_PROXY", "http://plain:3128")
        env.setenv("HTTPS_PROXY", "tls-proxy:3129")  # no scheme: http:// as httpx reads it
        assert route("http://a.example") == "http://plain:3128"
        assert route("https://a.example") == "http://tls-proxy:3129"
        env.delenv("HTTP_PROXY")
        env.setenv("ALL_PROXY", "socks5://sock:1080")
        assert route("http://a.example") == "socks5://sock:1080"


def test_lower_case_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    """As urllib (and so httpx) reads them, `https_proxy` wins over `HTTPS_PROXY`."""
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("https_proxy", "http://lower:2")
    assert route("https://a.example") == "http://lower:2"


@pytest.mark.parametrize(
    ("no_proxy", "url", "direct"),
    [
        ("example.com", "https://example.com", True),
        ("example.com", "https://api.example.com", True),
        ("example.com", "https://notexample.com", False),
        (".example.com", "https://api.example.com", True),
        (".example.com", "https://example.com", False),
        ("localhost", "http://localhost:8000", True),
        ("127.0.0.1", "http://127.0.0.1:8000", True),
        ("127.0.0.1", "http://127.0.0.2:8000", False),
        ("10.0.0.0/8", "http://10.20.30.40", True),
        ("10.0.0.0/8", "http://11.0.0.1", False),
        ("10.0.0.0/8", "http://example.com", False),  # a range never matches a name
        ("::1", "http://[::1]:8000", True),
        ("fd00::/8", "http://[fd12::1]", True),
        ("other.org, example.com", "https://example.com", True),
        ("*", "https://anything.example", True),
        ("http://example.com", "https://example.com", False),  # a scheme narrows the rule
        ("http://example.com", "http://example.com", True),
        ("example.com:8443", "https://example.com:8443", True),
        ("example.com:8443", "https://example.com", False),
        # a name with letters outside ASCII matches the request's host, which is IDNA
        ("bücher.example", "https://bücher.example", True),
        ("bücher.example", "https://api.bücher.example", True),
        ("BÜCHER.example", "https://xn--bcher-kva.example", True),
        ("xn--bcher-kva.example", "https://bücher.example", True),
        ("*.bücher.example", "https://bücher.example", False),
        ("bücher.example", "https://buecher.example", False),
    ],
)
def test_no_proxy_matching(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, url: str, direct: bool
) -> None:
    """NO_PROXY takes hosts, domains (and only sub-domains with a dot), `*`, IPs, CIDR."""
    monkeypatch.setenv("ALL_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert (route(url) is None) is direct


def test_trust_env_false_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`trust_env=False` reads no proxy variable."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert build_routes(None, trust_env=False) is None
    assert build_routes(None, trust_env=True) is not None


def test_the_given_proxy_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Provider(proxy=...)` is used for every URL, whatever NO_PROXY says (as in httpx)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "example.com")
    routes = build_routes("http://given:8080", trust_env=True)
    assert routes is not None
    chosen = route_of(routes, "https://example.com")
    assert chosen is not None
    assert chosen.label == "http://given:8080"


def test_a_bad_environment_proxy_fails_at_client_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unusable proxy variable fails when the client is built, masked, naming the provider."""
    monkeypatch.setenv("HTTPS_PROXY", "gopher://user:env-s3cret@proxy:70")
    from httpool._clients import make_transport

    with pytest.raises(httpool.ConfigError, match=r"Provider\('p'\)") as info:
        make_transport(httpool.Provider("p", base_url="https://api.example.com"))
    assert "env-s3cret" not in str(info.value)


def test_aiohttp_refuses_an_environment_socks_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The aiohttp transport speaks HTTP proxies only: a SOCKS proxy from the environment
    is a clear ConfigError when the client is built, naming the limitation, masked."""
    pytest.importorskip("httpx_aiohttp")
    from httpool._clients import make_transport

    monkeypatch.setenv("ALL_PROXY", "socks5://user:sock-pw@127.0.0.1:1080")
    provider = httpool.Provider("p", base_url="https://api.example.com", transport="aiohttp")
    with pytest.raises(httpool.ConfigError, match="aiohttp transport cannot use") as info:
        make_transport(provider)
    assert "sock-pw" not in str(info.value)
    assert "transport='httpool'" in str(info.value)


def test_proxy_credentials_never_reach_a_log(caplog: pytest.LogCaptureFixture) -> None:
    """The Basic token made from the proxy's credentials is masked by httpool's log filter."""
    from httpool._secret import install_log_redaction

    install_log_redaction()
    conf = parse_proxy("http://dave:log-s3cret-pw@proxy:3128")
    token = dict(conf.headers)[b"Proxy-Authorization"].decode()
    with caplog.at_level(logging.DEBUG, logger="httpcore.http11"):
        logging.getLogger("httpcore.http11").debug("header %s", token)
        logging.getLogger("httpcore.http11").debug("url http://dave:log-s3cret-pw@proxy")
    assert token.split()[1] not in caplog.text
    assert "log-s3cret-pw" not in caplog.text
    assert "***" in caplog.text


def test_providers_from_env_takes_a_proxy_per_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPOOL_<NAME>_PROXY, _TRUST_ENV and _DNS_TTL set the provider's fields; the proxy
    URL is kept as a Secret and a bad one is reported masked, naming the variable."""
    monkeypatch.setenv("HTTPOOL_OPENAI_BASE_URL", "https://api.openai.com/v1")
    monkeypatch.setenv("HTTPOOL_OPENAI_PROXY", "http://alice:env-proxy-pw@proxy:3128")
    monkeypatch.setenv("HTTPOOL_OPENAI_TRUST_ENV", "false")
    monkeypatch.setenv("HTTPOOL_OPENAI_DNS_TTL", "0")
    [provider] = httpool.providers_from_env(["openai"])
    assert isinstance(provider.proxy, httpool.Secret)
    assert provider.trust_env is False
    assert provider.dns_ttl == 0
    assert "env-proxy-pw" not in repr(provider)
    monkeypatch.setenv("HTTPOOL_OPENAI_PROXY", "ftp://alice:env-proxy-pw@proxy:21")
    with pytest.raises(httpool.ConfigError, match="HTTPOOL_OPENAI_PROXY") as info:
        httpool.providers_from_env(["openai"])
    assert "env-proxy-pw" not in str(info.value)


def test_a_mock_transport_replaces_a_proxied_one() -> None:
    """Tests swap a proxied provider's transport for a mock: the mock answers."""
    from httpool.testing import override_transport

    provider = httpool.Provider("p", base_url="https://a.example", proxy="http://p:1")
    pool = httpool.ClientPool(provider)
    with override_transport(pool, "p", lambda request: httpx.Response(204)):
        import asyncio

        async def call() -> int:
            async with pool:
                return (await pool.client("p").get("/")).status_code

        assert asyncio.run(call()) == 204


def test_aiohttp_with_a_socks_proxy_fails_at_construction() -> None:
    """A SOCKS proxy given to an aiohttp provider fails when the provider is made."""
    pytest.importorskip("httpx_aiohttp")
    with pytest.raises(httpool.ConfigError, match="aiohttp transport cannot use"):
        httpool.Provider(
            "p", base_url="https://a.example", transport="aiohttp", proxy="socks5://p:1080"
        )


def test_an_httpx2_proxy_is_taken_too() -> None:
    """httpx2's `Proxy` (the maintained fork's twin) configures a provider like httpx's."""
    httpx2 = pytest.importorskip("httpx2")
    given = httpx2.Proxy("https://erin:pw-x2@proxy:8443", headers={"X-Team": "b"})
    provider = httpool.Provider("p", base_url="https://a.example", proxy=given)
    conf = parse_proxy(provider.proxy)
    assert (conf.scheme, conf.host, conf.port, conf.auth) == (
        "https",
        "proxy",
        8443,
        ("erin", "pw-x2"),
    )
    assert "pw-x2" not in repr(provider)


def test_proxies_are_shown_without_their_credentials() -> None:
    """A proxy is shown masked with or without a scheme; what is no proxy at all is shown
    by its type; a URL httpx cannot read is refused, masked."""
    assert masked("alice:s3cret@proxy:3128/x") == "***@proxy:3128/x"
    assert masked("socks5://alice:s3cret@proxy:1080") == "socks5://***@proxy:1080"
    assert proxy_label("http://alice:s3cret@proxy:3128") == "http://***@proxy:3128"
    assert proxy_label(object()) == "<object>"
    with pytest.raises(ValueError, match="is not a valid proxy URL") as info:
        parse_proxy("http://alice:s3cret@[::1")
    assert "s3cret" not in str(info.value)
