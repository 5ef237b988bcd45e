"""`Provider` and `Secret`: validated, frozen, and never showing a credential."""

from __future__ import annotations

import dataclasses
import logging

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
