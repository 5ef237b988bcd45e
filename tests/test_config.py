"""`Provider` and `Secret`: validated, frozen, and never showing a credential."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import httpx
import pytest

import httpool
from httpool._secret import redact_url

KEY = "sk-test-0123456789abcdef"


def test_defaults_suit_provider_apis() -> None:
    """A provider gets HTTP/2, a long read timeout and a keep-alive pool by default."""
    p = httpool.Provider("openai", base_url="https://api.openai.com/v1")
    assert p.http2 is True
    assert p.timeout.read == 60.0
    assert p.timeout.connect == 5.0
    assert p.limits.max_connections == 100
    assert p.limits.max_keepalive_connections == 100
    assert p.transport == "httpool"
    assert p.origin == "https://api.openai.com"


def test_provider_is_frozen() -> None:
    """A provider cannot be changed after it was made."""
    p = httpool.Provider("a", base_url="http://x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.http2 = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_url": "api.openai.com/v1"}, "base_url"),
        ({"base_url": "ftp://files.example"}, "base_url"),
        ({"base_url": "https://user:pw@host"}, "base_url"),
        ({"limits": httpx.Limits(max_connections=0)}, "limits.max_connections"),
        ({"limits": httpx.Limits(max_connections=-1)}, "limits.max_connections"),
        (
            {"limits": httpx.Limits(max_keepalive_connections=-5)},
            "limits.max_keepalive_connections",
        ),
        ({"limits": httpx.Limits(keepalive_expiry=-1)}, "limits.keepalive_expiry"),
        ({"timeout": httpx.Timeout(-1.0)}, "timeout.connect"),
        ({"timeout": -3}, "timeout"),
        ({"headers": {"X-Key": 42}}, "headers"),
        ({"headers": {"X-Key": "a\r\nInjected: yes"}}, "headers"),
        ({"headers": {"bad header": "x"}}, "headers"),
        ({"http2": "yes"}, "http2"),
        ({"transport": "curl"}, "transport"),
        ({"max_lifetime": 0}, "max_lifetime"),
        ({"allowed_origins": "https://other"}, "allowed_origins"),
        ({"event_hooks": {"before": []}}, "event_hooks"),
    ],
)
def test_bad_field_names_the_field(kwargs: dict[str, object], field: str) -> None:
    """Each bad value raises ConfigError (a ValueError) naming the provider and the field."""
    with pytest.raises(httpool.ConfigError, match=rf"Provider\('p'\)\.{field.replace('.', '[.]')}"):
        httpool.Provider("p", **kwargs)  # type: ignore[arg-type]
    assert issubclass(httpool.ConfigError, ValueError)


@pytest.mark.parametrize("name", ["", "has space", "-lead", "a/b", "x" * 65])
def test_bad_names_are_refused(name: str) -> None:
    """An empty or odd provider name is refused with the rule spelled out."""
    with pytest.raises(httpool.ConfigError, match="provider name"):
        httpool.Provider(name, base_url="http://x")


def test_unknown_keyword_is_a_type_error() -> None:
    """A misspelt field fails like any Python call does."""
    with pytest.raises(TypeError, match="base_ur"):
        httpool.Provider("p", base_ur="http://x")  # type: ignore[call-arg]


def test_url_without_scheme_suggests_https() -> None:
    """The message for a URL without scheme says what to write instead."""
    with pytest.raises(httpool.ConfigError, match="write 'https://api.example.com/v1'"):
        httpool.Provider("p", base_url="api.example.com/v1")


def test_overrides_map_to_limits_and_timeout() -> None:
    """CodeWeaver-style flat overrides land in httpx.Limits and httpx.Timeout."""
    p = httpool.Provider("v", base_url="https://api.voyageai.com/v1").with_overrides(
        max_connections=7, read_timeout=90.0, pool_timeout=1.0, http2=False
    )
    assert p.limits.max_connections == 7
    assert p.timeout.read == 90.0
    assert p.timeout.pool == 1.0
    assert p.http2 is False
    with pytest.raises(TypeError, match="allowed: .*read_timeout"):
        p.with_overrides(read_timeout_s=3)


def test_secret_never_shows() -> None:
    """A Secret shows as *** in repr, str, format, and in the provider's repr."""
    secret = httpool.Secret(f"Bearer {KEY}")
    assert KEY not in repr(secret)
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert secret.get_secret_value() == f"Bearer {KEY}"
    p = httpool.Provider(
        "p",
        base_url="http://x",
        headers={"Authorization": secret},
        auth=("user", httpool.Secret(KEY)),
    )
    assert KEY not in repr(p)
    assert KEY not in str(p)
    assert "***" in repr(p)


def test_secret_in_bad_header_error_is_masked() -> None:
    """The error for a bad Secret header value does not echo the value."""
    with pytest.raises(httpool.ConfigError) as info:
        httpool.Provider(
            "p", base_url="http://x", headers={"X-Key": httpool.Secret(f"{KEY}\nX: y")}
        )
    assert KEY not in str(info.value)


def test_secret_cannot_be_pickled() -> None:
    """Pickling a Secret fails instead of writing the value out."""
    import pickle

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(httpool.Secret(KEY))


def test_redact_url_masks_credentials() -> None:
    """URL user-info and credential-like query parameters are masked."""
    shown = redact_url(f"https://u:pw@host/v1?api_key={KEY}&model=m&sig=abc")
    assert KEY not in shown
    assert "pw" not in shown
    assert "model=m" in shown
    assert "sig=***" in shown


def test_hpack_debug_logs_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """Secret header values that hpack logs at DEBUG while encoding HTTP/2 come out masked."""
    import hpack

    from httpool._secret import install_log_redaction

    secret = httpool.Secret(f"Bearer {KEY}")
    install_log_redaction()
    with caplog.at_level(logging.DEBUG):
        hpack.Encoder().encode([(b"authorization", secret.get_secret_value().encode())])
    assert caplog.records, "hpack logged nothing at DEBUG"
    assert all(KEY not in record.getMessage() for record in caplog.records)


def test_verify_false_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """Turning TLS verification off is explicit and logged once per provider."""
    from httpool._clients import build_sync_client

    p = httpool.Provider("insecure-one", base_url="https://x", verify=False)
    with caplog.at_level(logging.WARNING, logger="httpool"):
        build_sync_client(p).close()
        build_sync_client(p).close()
    warnings = [r for r in caplog.records if "verification is off" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].provider == "insecure-one"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "value",
    [f"Bearer {KEY}é", f"Bearer {KEY}\u2028", f"Bearer {KEY}\x7f", f"Bearer {KEY}\x01"],
    ids=["non-ASCII", "unicode line separator", "DEL", "control"],
)
@pytest.mark.parametrize("secret", [True, False], ids=["Secret", "str"])
def test_header_value_outside_printable_ascii_is_refused_without_echo(
    value: str, secret: bool
) -> None:
    """A header value httpx could not send (non-ASCII) or a control character is refused
    when the Provider is made, naming the field and header, never the value."""
    with pytest.raises(httpool.ConfigError) as info:
        httpool.Provider(
            "p",
            base_url="http://x",
            headers={"Authorization": httpool.Secret(value) if secret else value},
        )
    message = str(info.value)
    assert message.startswith("Provider('p').headers: ")
    assert "'Authorization'" in message
    assert KEY not in message
    assert KEY not in repr(info.value)
    assert info.value.__cause__ is None


def test_tab_and_visible_ascii_are_accepted() -> None:
    """A tab and every visible ASCII character are valid in a header value."""
    visible = "".join(chr(c) for c in range(0x20, 0x7F))
    p = httpool.Provider("p", base_url="http://x", headers={"X-All": f"a\t{visible}"})
    assert p.headers["X-All"] == f"a\t{visible}"


def test_missing_ca_path_is_refused_without_echo(tmp_path: Path) -> None:
    """verify= a CA path that does not exist fails when the Provider is made."""
    missing = tmp_path / f"{KEY}.pem"
    with pytest.raises(httpool.ConfigError) as info:
        httpool.Provider("p", base_url="https://x", verify=str(missing))
    message = str(info.value)
    assert message.startswith("Provider('p').verify: ")
    assert "does not exist" in message
    assert KEY not in message
    with pytest.raises(httpool.ConfigError, match="verify"):
        httpool.Provider("p", base_url="https://x", verify="")


def test_existing_ca_path_is_accepted(tmp_path: Path) -> None:
    """An existing CA file or directory passes."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    assert httpool.Provider("p", base_url="https://x", verify=str(bundle)).verify == str(bundle)
    assert httpool.Provider("p", base_url="https://x", verify=str(tmp_path)).verify == str(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_url": f"https://api.example.com:{KEY}"}, "base_url"),
        ({"base_url": f"https://api.example.com:{KEY}/v1"}, "base_url"),
        ({"timeout": KEY}, "timeout"),
        ({"http2": KEY}, "http2"),
        ({"warmup": KEY}, "warmup"),
        ({"transport": KEY}, "transport"),
        ({"allowed_origins": [f"ftp://{KEY}:x"]}, "allowed_origins"),
        ({"allowed_origins": [f"https://host:{KEY}"]}, "allowed_origins"),
    ],
)
def test_config_error_never_echoes_a_value(kwargs: dict[str, object], field: str) -> None:
    """A value in the wrong place (a key pasted as a port, a flag or a timeout) is named by
    its field and never shown."""
    with pytest.raises(httpool.ConfigError) as info:
        httpool.Provider("p", **({"base_url": "https://x"} | kwargs))  # type: ignore[arg-type]
    assert f".{field}" in str(info.value)
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)


@pytest.mark.parametrize(
    ("options", "error", "said"),
    [
        ({"name": 123}, TypeError, r"Provider\(name\): the provider name must be a str, got int"),
        ({"base_url": "http://"}, httpool.ConfigError, r"base_url: 'http://' has no host"),
        (
            {"headers": {"X-Key": "a", "x-key": "b"}},
            httpool.ConfigError,
            r"headers: 'x-key' is given twice \(header names ignore case\)",
        ),
        (
            {"event_hooks": {"send": []}},
            httpool.ConfigError,
            r"event_hooks: unknown hook 'send'; use 'request' or 'response'",
        ),
        (
            {"event_hooks": {"request": [1]}},
            httpool.ConfigError,
            r"event_hooks\['request'\]: expected a list of callables",
        ),
    ],
)
def test_bad_provider_fields_are_named(
    options: dict[str, object], error: type[Exception], said: str
) -> None:
    """Each bad field is refused with the field's name and what is wrong with it."""
    given: dict[str, object] = {"name": "p", "base_url": "https://api.example.com", **options}
    with pytest.raises(error, match=said):
        httpool.Provider(**given)  # type: ignore[arg-type]


def test_base_url_may_be_an_httpx_url() -> None:
    """An `httpx.URL` base URL is taken as its text."""
    url = httpx.URL("https://api.example.com/v1")
    provider = httpool.Provider("p", base_url=url)  # type: ignore[arg-type]  # run time only
    assert provider.base_url == "https://api.example.com/v1"
