"""Bad input fuzzed with hypothesis: only ConfigError or TypeError, with the field named."""

from __future__ import annotations

import re
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import httpool
from httpool._config import OVERRIDES

FIELDS = [
    "base_url",
    "headers",
    "auth",
    "timeout",
    "limits",
    "http2",
    "follow_redirects",
    "verify",
    "event_hooks",
    "transport",
    "max_lifetime",
    "retry_post",
    "allowed_origins",
    "health_path",
    "warmup",
    "required",
]

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.binary(max_size=10),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers()), max_size=3),
    st.builds(
        httpx.Limits,
        max_connections=st.one_of(st.none(), st.integers(-5, 5)),
        max_keepalive_connections=st.one_of(st.none(), st.integers(-5, 5)),
        keepalive_expiry=st.one_of(st.none(), st.floats(-5, 5)),
    ),
    st.builds(httpx.Timeout, st.one_of(st.none(), st.floats(-5, 5))),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    field=st.sampled_from(FIELDS), value=junk, name=st.one_of(st.just("p"), st.text(max_size=12))
)
def test_provider_fails_only_with_clear_errors(field: str, value: Any, name: str) -> None:
    """Any value in any field either makes a valid Provider or a ConfigError/TypeError naming it."""
    try:
        provider = httpool.Provider(name, **{field: value})
    except httpool.ConfigError as exc:
        message = str(exc)
        assert "Provider(" in message or "provider name" in message
        assert re.search(rf"\.{re.escape(field)}\b|name", message), message
    except TypeError as exc:
        assert "name" in str(exc) or field in str(exc) or "Secret" in str(exc)
    else:
        assert provider.name == name
        assert repr(provider).startswith("Provider(")


@settings(max_examples=200, deadline=None)
@given(
    overrides=st.dictionaries(
        st.sampled_from([*sorted(OVERRIDES), "bogus"]),
        junk,
        max_size=3,
    )
)
def test_overrides_fail_only_with_clear_errors(overrides: dict[str, Any]) -> None:
    """get_client-style overrides either apply or fail with ConfigError/TypeError."""
    base = httpool.Provider("p", base_url="http://127.0.0.1:9")
    try:
        base.with_overrides(**overrides)
    except httpool.ConfigError as exc:
        assert "Provider('p')." in str(exc)
    except TypeError as exc:
        assert "unknown override(s) for provider 'p'" in str(exc)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(st.text(max_size=10), max_size=4))
def test_pool_construction_is_all_or_nothing(names: list[str]) -> None:
    """A pool is either fully built from valid providers, or not built at all."""
    try:
        providers = [httpool.Provider(n, base_url="http://127.0.0.1:9") for n in names]
        pool = httpool.ClientPool(*providers)
    except httpool.ConfigError:
        return
    assert pool.state is httpool.PoolState.UNOPENED
    assert list(pool.names) == names

    async def run() -> None:
        async with pool:
            assert all(isinstance(pool.client(n), httpx.AsyncClient) for n in names)
        assert pool.state is httpool.PoolState.CLOSED

    anyio.run(run)


@pytest.mark.parametrize("bad", [None, 3, "openai", object()])
def test_pool_refuses_non_providers(bad: object) -> None:
    """ClientPool takes Provider objects only, and says so."""
    with pytest.raises(TypeError, match="takes httpool.Provider objects"):
        httpool.ClientPool(bad)  # type: ignore[arg-type]
