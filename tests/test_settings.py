"""Providers from the environment, a .env file and TOML; connection budgets per worker."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.

import logging
import os
import traceback
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import httpool
from httpool._budget import per_worker
from httpool._settings import FIELDS, providers_from_env

from .upstream import Upstream

KEY = "sk-test-4f9a8b7c6d5e"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No HTTPOOL_ variable or WEB_CONCURRENCY of the machine leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("HTTPOOL_") or name in ("WEB_CONCURRENCY", "OPENAI_API_KEY"):
            monkeypatch.delenv(name)
    return monkeypatch


def setenv(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Set environment variables for one test."""
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def only(providers: list[httpool.Provider]) -> httpool.Provider:
    """The single provider of a list."""
    assert len(providers) == 1
    return providers[0]


def config_error(**kwargs: Any) -> str:
    """The message of the ConfigError that providers_from_env raises."""
    with pytest.raises(httpool.ConfigError) as info:
        providers_from_env(**kwargs)
    return str(info.value)


def write(path: Path, text: str) -> Path:
    """Write a file for one test."""
    path.write_text(text, encoding="utf-8")
    return path


# -- from the environment --------------------------------------------------------------


def test_every_variable_sets_its_field(clean_env: pytest.MonkeyPatch) -> None:
    """Each HTTPOOL_OPENAI_* variable lands in the matching Provider field."""
    setenv(
        clean_env,
        HTTPOOL_OPENAI_BASE_URL="https://api.openai.com/v1",
        HTTPOOL_OPENAI_API_KEY=KEY,
        HTTPOOL_OPENAI_HTTP2="false",
        HTTPOOL_OPENAI_MAX_CONNECTIONS="40",
        HTTPOOL_OPENAI_MAX_KEEPALIVE_CONNECTIONS="20",
        HTTPOOL_OPENAI_KEEPALIVE_EXPIRY="15.5",
        HTTPOOL_OPENAI_CONNECT_TIMEOUT="2",
        HTTPOOL_OPENAI_READ_TIMEOUT="120",
        HTTPOOL_OPENAI_WRITE_TIMEOUT="7",
        HTTPOOL_OPENAI_POOL_TIMEOUT="3",
        HTTPOOL_OPENAI_HEALTH_PATH="/models",
        HTTPOOL_OPENAI_WARMUP="2",
        HTTPOOL_OPENAI_TRANSPORT="httpx",
        HTTPOOL_OPENAI_MAX_LIFETIME="600",
        HTTPOOL_OPENAI_RETRY_POST="yes",
        HTTPOOL_OPENAI_FOLLOW_REDIRECTS="1",
        HTTPOOL_OPENAI_REQUIRED="true",
        HTTPOOL_OPENAI_ALLOWED_ORIGINS="https://files.openai.com, https://cdn.openai.com",
    )
    provider = only(providers_from_env())
    assert provider.name == "openai"
    assert provider.base_url == "https://api.openai.com/v1"
    assert provider.headers == {"Authorization": httpool.Secret(f"Bearer {KEY}")}
    assert provider.http2 is False
    assert provider.limits == httpx.Limits(
        max_connections=40, max_keepalive_connections=20, keepalive_expiry=15.5
    )
    assert provider.timeout == httpx.Timeout(connect=2.0, read=120.0, write=7.0, pool=3.0)
    assert provider.health_path == "/models"
    assert provider.warmup == 2
    assert provider.transport == "httpx"
    assert provider.max_lifetime == 600.0
    assert (provider.retry_post, provider.follow_redirects, provider.required) == (True,) * 3
    assert provider.allowed_origins == ("https://files.openai.com", "https://cdn.openai.com")


def test_unset_fields_keep_httpool_defaults(clean_env: pytest.MonkeyPatch) -> None:
    """A provider with only a base URL has httpool's default timeout, limits and no headers."""
    setenv(clean_env, HTTPOOL_VOYAGE_BASE_URL="https://api.voyageai.com/v1")
    provider = only(providers_from_env())
    assert provider == httpool.Provider("voyage", base_url="https://api.voyageai.com/v1")
    assert provider.timeout == httpool.DEFAULT_TIMEOUT
    assert provider.limits == httpool.DEFAULT_LIMITS


def test_max_connections_alone_keeps_every_connection_alive(clean_env: pytest.MonkeyPatch) -> None:
    """Setting only MAX_CONNECTIONS lowers the keep-alive limit to it, as the defaults do."""
    setenv(clean_env, HTTPOOL_A_BASE_URL="https://a.example", HTTPOOL_A_MAX_CONNECTIONS="10")
    limits = only(providers_from_env()).limits
    assert (limits.max_connections, limits.max_keepalive_connections) == (10, 10)


def test_auth_header_carries_the_raw_key(clean_env: pytest.MonkeyPatch) -> None:
    """With AUTH_HEADER=X-Api-Key the key is that header's value, without 'Bearer'."""
    setenv(
        clean_env,
        HTTPOOL_ANTHROPIC_BASE_URL="https://api.anthropic.com/v1",
        HTTPOOL_ANTHROPIC_API_KEY=KEY,
        HTTPOOL_ANTHROPIC_AUTH_HEADER="X-Api-Key",
    )
    provider = only(providers_from_env())
    assert provider.headers == {"X-Api-Key": httpool.Secret(KEY)}
    assert KEY not in repr(provider)


def test_auth_header_without_a_key_is_an_error(clean_env: pytest.MonkeyPatch) -> None:
    """An AUTH_HEADER with no API key is a mistake that fails at once."""
    setenv(clean_env, HTTPOOL_A_BASE_URL="https://a.example", HTTPOOL_A_AUTH_HEADER="X-Api-Key")
    assert config_error() == "HTTPOOL_A_AUTH_HEADER is set but the provider has no API key"


def test_names_are_discovered_from_base_url_variables(clean_env: pytest.MonkeyPatch) -> None:
    """Every HTTPOOL_<NAME>_BASE_URL makes a provider, its name lower-cased, '_' kept."""
    setenv(
        clean_env,
        HTTPOOL_OPENAI_BASE_URL="https://api.openai.com/v1",
        HTTPOOL_MY_SERVICE_BASE_URL="http://my-service:8080",
        HTTPOOL_MY_SERVICE_READ_TIMEOUT="5",
        HTTPOOL_COHERE_API_KEY=KEY,  # no base URL: not a provider
    )
    providers = providers_from_env()
    assert [p.name for p in providers] == ["my_service", "openai"]
    assert providers[0].timeout.read == 5.0


def test_a_discovered_name_must_be_valid(clean_env: pytest.MonkeyPatch) -> None:
    """A base URL variable whose name part is not a provider name is reported."""
    setenv(clean_env, HTTPOOL__HIDDEN_BASE_URL="https://a.example")
    assert config_error().startswith("HTTPOOL__HIDDEN_BASE_URL: providers_from_env(name='_hidden')")


def test_names_given_are_the_only_ones_loaded(clean_env: pytest.MonkeyPatch) -> None:
    """With names=..., only those providers load; '-' and '.' are '_' in variable names."""
    setenv(
        clean_env,
        HTTPOOL_OPENAI_BATCH_BASE_URL="https://api.openai.com/v1",
        HTTPOOL_OPENAI_BATCH_READ_TIMEOUT="600",
        HTTPOOL_OTHER_BASE_URL="https://other.example",
    )
    provider = only(providers_from_env(["openai-batch"]))
    assert (provider.name, provider.timeout.read) == ("openai-batch", 600.0)


def test_a_named_provider_needs_a_base_url(clean_env: pytest.MonkeyPatch) -> None:
    """A provider asked for by name without a base URL is a ConfigError naming the variable."""
    assert config_error(names=["openai"]) == (
        "provider 'openai': HTTPOOL_OPENAI_BASE_URL is not set"
    )


def test_names_must_be_a_list(clean_env: pytest.MonkeyPatch) -> None:
    """A single string for names is refused, not read letter by letter."""
    with pytest.raises(TypeError, match=r"pass a list of names, e.g. \['openai'\]"):
        providers_from_env("openai")


def test_a_custom_prefix(clean_env: pytest.MonkeyPatch) -> None:
    """prefix= changes the variables read, and the ones named in errors."""
    setenv(clean_env, MYAPP_LLM_BASE_URL="https://llm.example", MYAPP_LLM_WARMUP="many")
    assert config_error(prefix="MYAPP_") == "MYAPP_LLM_WARMUP='many': expected a whole number"


def test_an_empty_variable_counts_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    """`HTTPOOL_A_HTTP2=` (blank, as compose files leave it) keeps the default."""
    setenv(clean_env, HTTPOOL_A_BASE_URL="https://a.example", HTTPOOL_A_HTTP2="")
    assert only(providers_from_env()).http2 is True


# -- errors ----------------------------------------------------------------------------


def test_a_bad_value_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    """A value that does not parse gives a ConfigError naming the variable and the problem."""
    setenv(
        clean_env,
        HTTPOOL_OPENAI_BASE_URL="https://api.openai.com/v1",
        HTTPOOL_OPENAI_MAX_CONNECTIONS="ten",
    )
    with pytest.raises(httpool.ConfigError) as info:
        providers_from_env()
    assert str(info.value) == "HTTPOOL_OPENAI_MAX_CONNECTIONS='ten': expected a whole number"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("HTTP2", "maybe", "expected true or false"),
        ("READ_TIMEOUT", "soon", "expected a number of seconds"),
        ("READ_TIMEOUT", "-1", "must be >= 0.0"),
        ("KEEPALIVE_EXPIRY", "inf", "expected a finite number"),
        ("MAX_KEEPALIVE_CONNECTIONS", "0", "must be >= 1"),
        ("MAX_LIFETIME", "0", "must be > 0.0"),
        ("WARMUP", "5000", "must be <= 1000"),
        ("TRANSPORT", "curl", "expected 'httpool', 'httpx' or 'aiohttp'"),
    ],
)
def test_each_kind_of_bad_value(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    """Each kind of bad value is reported in plain words, with the variable and value."""
    setenv(clean_env, HTTPOOL_A_BASE_URL="https://a.example", **{f"HTTPOOL_A_{variable}": value})
    assert config_error() == f"HTTPOOL_A_{variable}={value!r}: {problem}"


def test_every_problem_is_reported_at_once(clean_env: pytest.MonkeyPatch) -> None:
    """All bad values of all providers come in one error, one line each."""
    setenv(
        clean_env,
        HTTPOOL_A_BASE_URL="https://a.example",
        HTTPOOL_A_HTTP2="maybe",
        HTTPOOL_A_WARMUP="x",
        HTTPOOL_B_BASE_URL="https://b.example",
        HTTPOOL_B_POOL_TIMEOUT="later",
    )
    message = config_error()
    assert message.splitlines() == [
        "3 problems in the httpool configuration:",
        "  - HTTPOOL_A_HTTP2='maybe': expected true or false",
        "  - HTTPOOL_A_WARMUP='x': expected a whole number",
        "  - HTTPOOL_B_POOL_TIMEOUT='later': expected a number of seconds",
    ]


def test_provider_checks_name_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    """Provider's own validation still applies, and its error is prefixed with the variable."""
    setenv(clean_env, HTTPOOL_OPENAI_BASE_URL="api.openai.com/v1")
    assert config_error() == (
        "HTTPOOL_OPENAI_BASE_URL: Provider('openai').base_url: 'api.openai.com/v1' needs an "
        "http:// or https:// scheme; write 'https://api.openai.com/v1'"
    )


def test_a_bad_key_never_shows_in_an_error(clean_env: pytest.MonkeyPatch) -> None:
    """A key refused by Provider's checks is named by variable, never shown, nor chained."""
    setenv(
        clean_env,
        HTTPOOL_A_BASE_URL="https://a.example",
        HTTPOOL_A_API_KEY=f"{KEY}\n",  # a line break: refused as header injection
    )
    with pytest.raises(httpool.ConfigError) as info:
        providers_from_env()
    shown = "".join(traceback.format_exception(info.value))
    assert KEY not in shown
    assert str(info.value).startswith("HTTPOOL_A_API_KEY: Provider('a').headers: ")
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_a_key_in_the_wrong_variable_is_masked(clean_env: pytest.MonkeyPatch) -> None:
    """The API key pasted into another variable is masked in that variable's error."""
    setenv(
        clean_env,
        HTTPOOL_A_BASE_URL="https://a.example",
        HTTPOOL_A_API_KEY=KEY,
        HTTPOOL_A_HEALTH_PATH=KEY,
    )
    message = config_error()
    assert KEY not in message
    assert message.startswith("HTTPOOL_A_HEALTH_PATH: Provider('a').health_path: ")
    assert "'***'" in message


def test_a_key_of_the_wrong_type_in_toml_is_not_shown(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A TOML api_key that is not a string is reported without its value."""
    toml = write(
        tmp_path / "c.toml", '[providers.a]\nbase_url = "https://a.example"\napi_key = 12345678\n'
    )
    assert config_error(toml_file=toml) == f"[providers.a] api_key (in {toml}): expected a string"


def test_a_bad_header_name_names_auth_header(clean_env: pytest.MonkeyPatch) -> None:
    """An AUTH_HEADER that is not a header name is blamed on that variable."""
    setenv(
        clean_env,
        HTTPOOL_A_BASE_URL="https://a.example",
        HTTPOOL_A_API_KEY=KEY,
        HTTPOOL_A_AUTH_HEADER="X Api Key",
    )
    assert config_error().startswith("HTTPOOL_A_AUTH_HEADER: Provider('a').headers: ")


def test_an_unknown_variable_is_a_warning(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A misspelt variable is ignored with a warning that suggests the right one."""
    setenv(
        clean_env,
        HTTPOOL_OPENAI_BASE_URL="https://api.openai.com/v1",
        HTTPOOL_OPENAI_MAX_CONECTIONS="10",
        HTTPOOL_OPENAI_BATCH_BASE_URL="https://api.openai.com/v1",  # another provider's
    )
    with caplog.at_level(logging.WARNING, logger="httpool"):
        providers_from_env(["openai"])
    assert [r.getMessage() for r in caplog.records] == [
        "httpool: HTTPOOL_OPENAI_MAX_CONECTIONS is not an httpool setting; ignored; "
        "did you mean HTTPOOL_OPENAI_MAX_CONNECTIONS?"
    ]


def test_no_setting_name_ends_with_another() -> None:
    """No variable can belong to two providers: no setting ends with '_' plus another one."""
    for field in FIELDS:
        assert not any(field.endswith(f"_{other}") for other in FIELDS), field


# -- .env and TOML files ---------------------------------------------------------------


def test_a_toml_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """[providers.<name>] tables make providers; api_key_env names the key's variable."""
    toml = write(
        tmp_path / "httpool.toml",
        """
        [providers.openai]
        base_url = "https://api.openai.com/v1"
        api_key_env = "OPENAI_API_KEY"
        read_timeout = 120
        http2 = false
        allowed_origins = ["https://files.openai.com"]

        [providers.internal]
        base_url = "http://internal:8080"
        api_key = "local-dev-key"
        auth_header = "X-Token"
        """.replace("\n        ", "\n"),
    )
    setenv(clean_env, OPENAI_API_KEY=KEY)
    openai, internal = providers_from_env(toml_file=toml)
    assert openai.headers == {"Authorization": httpool.Secret(f"Bearer {KEY}")}
    assert (openai.timeout.read, openai.http2) == (120.0, False)
    assert openai.allowed_origins == ("https://files.openai.com",)
    assert internal.headers == {"X-Token": httpool.Secret("local-dev-key")}


def test_toml_problems_name_the_key_and_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A bad or unknown key in TOML is reported with its table and file."""
    toml = write(
        tmp_path / "c.toml",
        '[providers.a]\nbase_url = "https://a.example"\nwarmup = "x"\nmax_conections = 3\n',
    )
    assert config_error(toml_file=toml).splitlines() == [
        "2 problems in the httpool configuration:",
        f"  - [providers.a] warmup (in {toml})='x': expected a whole number",
        f"  - [providers.a] max_conections (in {toml}): not an httpool setting; "
        "did you mean 'max_connections'?",
    ]


def test_a_field_of_two_types_fails_once(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """allowed_origins takes a string or a list: a number gets one line saying both."""
    toml = write(
        tmp_path / "c.toml", '[providers.a]\nbase_url = "https://a.example"\nallowed_origins = 5\n'
    )
    assert config_error(toml_file=toml) == (
        f"[providers.a] allowed_origins (in {toml})=5: expected a string or a list of strings"
    )


def test_api_key_env_must_name_a_set_variable(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """api_key_env naming a variable that is not set fails at once, naming both."""
    toml = write(
        tmp_path / "c.toml",
        '[providers.a]\nbase_url = "https://a.example"\napi_key_env = "A_KEY"\n',
    )
    assert config_error(toml_file=toml) == (
        f"[providers.a] api_key_env (in {toml}) names A_KEY, which is not set"
    )


def test_api_key_and_api_key_env_together(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One source may not give both api_key and api_key_env."""
    toml = write(
        tmp_path / "c.toml",
        '[providers.a]\nbase_url = "https://a.example"\napi_key = "k-1234"\napi_key_env = "K"\n',
    )
    setenv(clean_env, K="k-5678")
    message = config_error(toml_file=toml)
    assert message.startswith(f"[providers.a] api_key (in {toml}) and [providers.a] api_key_env")
    assert message.endswith(": set one, not both")


def test_the_key_of_the_highest_source_wins(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """HTTPOOL_A_API_KEY in the environment wins over api_key_env in TOML."""
    toml = write(
        tmp_path / "c.toml", '[providers.a]\nbase_url = "https://a.example"\napi_key_env = "K"\n'
    )
    setenv(clean_env, HTTPOOL_A_API_KEY=KEY)  # K itself is not set, and not needed
    provider = only(providers_from_env(toml_file=toml))
    assert provider.headers == {"Authorization": httpool.Secret(f"Bearer {KEY}")}


@pytest.mark.parametrize(
    ("in_env", "in_dotenv", "in_toml", "expected"),
    [
        (True, True, True, 11.0),
        (False, True, True, 22.0),
        (False, False, True, 33.0),
        (False, False, False, httpool.DEFAULT_TIMEOUT.read),
    ],
)
def test_precedence_env_then_dotenv_then_toml_then_defaults(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    in_env: bool,
    in_dotenv: bool,
    in_toml: bool,
    expected: float,
) -> None:
    """The environment wins over the .env file, which wins over TOML, then the defaults."""
    if in_env:
        setenv(clean_env, HTTPOOL_A_READ_TIMEOUT="11")
    dotenv = write(tmp_path / ".env", "HTTPOOL_A_READ_TIMEOUT=22\n" if in_dotenv else "\n")
    toml = write(
        tmp_path / "c.toml",
        '[providers.a]\nbase_url = "https://a.example"\n'
        + ("read_timeout = 33\n" if in_toml else ""),
    )
    provider = only(providers_from_env(env_file=dotenv, toml_file=toml))
    assert provider.timeout.read == expected


def test_a_dotenv_file_alone(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A .env file configures providers like the environment, without changing os.environ."""
    dotenv = write(
        tmp_path / ".env",
        f"HTTPOOL_A_BASE_URL=https://a.example\nHTTPOOL_A_API_KEY={KEY}\nOTHER_APP_SETTING=1\n",
    )
    provider = only(providers_from_env(env_file=dotenv))
    assert provider.headers == {"Authorization": httpool.Secret(f"Bearer {KEY}")}
    assert "HTTPOOL_A_BASE_URL" not in os.environ


def test_a_bad_value_in_dotenv_names_the_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bad value from the .env file is reported with the variable and the file."""
    dotenv = write(tmp_path / ".env", "HTTPOOL_A_BASE_URL=https://a.example\nHTTPOOL_A_HTTP2=2\n")
    assert config_error(env_file=dotenv) == (
        f"HTTPOOL_A_HTTP2 (in {dotenv})='2': expected true or false"
    )


def test_missing_and_broken_files(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A file that is not there, or is not TOML, or has no tables, fails with its name."""
    assert config_error(toml_file=tmp_path / "nope.toml").endswith("nope.toml' does not exist")
    assert config_error(env_file=tmp_path / ".nope").endswith(".nope' does not exist")
    broken = write(tmp_path / "broken.toml", "[providers.a\n")
    assert config_error(toml_file=broken).startswith(f"{broken}: not valid TOML (")
    flat = write(tmp_path / "flat.toml", 'providers = "openai"\n')
    assert config_error(toml_file=flat).endswith(
        "write each provider as a [providers.<name>] table"
    )


# -- budgets per worker ----------------------------------------------------------------


def test_per_worker_divides_the_deployment_budget(clean_env: pytest.MonkeyPatch) -> None:
    """400 connections over WEB_CONCURRENCY=3 workers is 133 each, rounded down."""
    setenv(clean_env, WEB_CONCURRENCY="3")
    total = httpx.Limits(max_connections=400, max_keepalive_connections=200, keepalive_expiry=9)
    assert per_worker(total) == httpx.Limits(
        max_connections=133, max_keepalive_connections=66, keepalive_expiry=9
    )
    assert per_worker(total, workers=4).max_connections == 100


def test_per_worker_defaults_to_one_worker(clean_env: pytest.MonkeyPatch) -> None:
    """Without WEB_CONCURRENCY the whole budget is the one process's; None stays unlimited."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=50)
    assert per_worker(limits) == limits


def test_per_worker_gives_each_worker_at_least_one(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A budget smaller than the worker count still gives each worker one, with a warning."""
    with caplog.at_level(logging.WARNING, logger="httpool"):
        assert per_worker(httpx.Limits(max_connections=2), workers=8).max_connections == 1
    assert "cannot be split among 8 workers" in caplog.text


@pytest.mark.parametrize("value", ["auto", "0", "-2", "1.5"])
def test_a_bad_web_concurrency_is_named(clean_env: pytest.MonkeyPatch, value: str) -> None:
    """WEB_CONCURRENCY that is not a whole number >= 1 is a ConfigError naming it."""
    setenv(clean_env, WEB_CONCURRENCY=value)
    with pytest.raises(httpool.ConfigError, match=f"^WEB_CONCURRENCY={value!r}: expected"):
        per_worker(httpool.DEFAULT_LIMITS)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_a_bad_workers_argument(workers: Any) -> None:
    """per_worker(workers=...) takes a whole number >= 1."""
    with pytest.raises(httpool.ConfigError, match=r"per_worker\(workers="):
        per_worker(httpool.DEFAULT_LIMITS, workers=workers)


def test_max_connections_total_is_divided_among_workers(clean_env: pytest.MonkeyPatch) -> None:
    """HTTPOOL_<NAME>_MAX_CONNECTIONS_TOTAL is the deployment's budget, split by WEB_CONCURRENCY."""
    setenv(
        clean_env,
        WEB_CONCURRENCY="4",
        HTTPOOL_A_BASE_URL="https://a.example",
        HTTPOOL_A_MAX_CONNECTIONS_TOTAL="400",
    )
    limits = only(providers_from_env()).limits
    assert (limits.max_connections, limits.max_keepalive_connections) == (100, 100)


def test_max_connections_and_total_in_one_source(clean_env: pytest.MonkeyPatch) -> None:
    """MAX_CONNECTIONS and MAX_CONNECTIONS_TOTAL side by side is ambiguous: an error."""
    setenv(
        clean_env,
        HTTPOOL_A_BASE_URL="https://a.example",
        HTTPOOL_A_MAX_CONNECTIONS="10",
        HTTPOOL_A_MAX_CONNECTIONS_TOTAL="400",
    )
    assert config_error() == (
        "HTTPOOL_A_MAX_CONNECTIONS and HTTPOOL_A_MAX_CONNECTIONS_TOTAL: set one, not both"
    )


def test_a_total_in_the_environment_wins_over_toml(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MAX_CONNECTIONS_TOTAL in the environment replaces max_connections from TOML."""
    toml = write(
        tmp_path / "c.toml", '[providers.a]\nbase_url = "https://a.example"\nmax_connections = 5\n'
    )
    setenv(clean_env, WEB_CONCURRENCY="2", HTTPOOL_A_MAX_CONNECTIONS_TOTAL="50")
    assert only(providers_from_env(toml_file=toml)).limits.max_connections == 25


# -- in an app -------------------------------------------------------------------------

Up = Annotated[httpx.AsyncClient, httpool.client("up")]


def test_an_app_configured_from_the_environment(
    clean_env: pytest.MonkeyPatch, upstream: Upstream
) -> None:
    """An app whose providers come from the environment sends the key to the upstream."""
    setenv(clean_env, HTTPOOL_UP_BASE_URL=upstream.url, HTTPOOL_UP_API_KEY=KEY)
    app = FastAPI(lifespan=httpool.lifespan(*providers_from_env()))

    @app.get("/ping")
    async def ping(up: Up) -> Any:
        return (await up.get("/v1/ping")).json()

    with TestClient(app) as client:
        seen = client.get("/ping").json()
    assert seen["headers"]["authorization"] == f"Bearer {KEY}"
    assert upstream.connections == 1


def test_the_toml_example_of_the_docs(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The httpool.toml of docs/environment.md loads as the page says."""
    page = (Path(__file__).parent.parent / "docs" / "environment.md").read_text(encoding="utf-8")
    example = page.split('```toml title="httpool.toml"\n', 1)[1].split("```", 1)[0]
    setenv(clean_env, OPENAI_API_KEY=KEY, VOYAGE_API_KEY=KEY, WEB_CONCURRENCY="4")
    openai, voyage = providers_from_env(toml_file=write(tmp_path / "httpool.toml", example))
    assert (openai.timeout.read, openai.warmup) == (120.0, 2)
    assert voyage.limits.max_connections == 50
    assert voyage.allowed_origins == ("https://files.voyageai.com",)


# -- the policy: retries, limits, breaker -------------------------------------------------


def test_the_policy_variables_set_the_policy(clean_env: pytest.MonkeyPatch) -> None:
    """RETRY_ATTEMPTS, MAX_CONCURRENCY, the RATE_LIMIT* and BREAKER_* variables become the
    provider's `Retry`, `max_concurrency`, `RateLimit` and `Breaker`."""
    setenv(
        clean_env,
        HTTPOOL_OPENAI_BASE_URL="https://api.openai.com/v1",
        HTTPOOL_OPENAI_RETRY_ATTEMPTS="5",
        HTTPOOL_OPENAI_MAX_CONCURRENCY="8",
        HTTPOOL_OPENAI_RATE_LIMIT="500/minute",
        HTTPOOL_OPENAI_RATE_LIMIT_STORAGE="redis://:hunter2@redis:6379/0",
        HTTPOOL_OPENAI_RATE_LIMIT_KEY="shared",
        HTTPOOL_OPENAI_RATE_LIMIT_ON_STORAGE_ERROR="closed",
        HTTPOOL_OPENAI_BREAKER_FAILURES="3",
        HTTPOOL_OPENAI_BREAKER_COOLDOWN="20",
    )
    provider = only(providers_from_env())
    assert provider.retry == httpool.Retry(attempts=5)
    assert provider.max_concurrency == 8
    assert provider.rate_limit == httpool.RateLimit(
        "500/minute",
        storage="redis://:hunter2@redis:6379/0",
        key="shared",
        on_storage_error="closed",
    )
    assert provider.breaker == httpool.Breaker(failures=3, cooldown=20.0)
    assert "hunter2" not in repr(provider)


def test_retry_and_breaker_switches(clean_env: pytest.MonkeyPatch) -> None:
    """RETRY=true and BREAKER=true turn them on with their defaults; unset, they are off."""
    setenv(clean_env, HTTPOOL_A_BASE_URL="https://a.test", HTTPOOL_B_BASE_URL="https://b.test")
    setenv(clean_env, HTTPOOL_A_RETRY="true", HTTPOOL_A_BREAKER="on")
    a, b = providers_from_env(["a", "b"])
    assert (a.retry, a.breaker) == (httpool.Retry(), httpool.Breaker())
    assert (b.retry, b.max_concurrency, b.rate_limit, b.breaker) == (None, None, None, None)


def test_the_policy_in_toml(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The same keys in a [providers.<name>] table, with TOML's own types."""
    path = tmp_path / "httpool.toml"
    path.write_text(
        "[providers.openai]\n"
        'base_url = "https://api.openai.com/v1"\n'
        "retry = true\n"
        "max_concurrency = 16\n"
        'rate_limit = "500/minute"\n'
        "breaker_window = 60\n"
    )
    provider = only(providers_from_env(toml_file=path))
    assert provider.retry == httpool.Retry()
    assert provider.max_concurrency == 16
    assert provider.rate_limit == httpool.RateLimit("500/minute")
    assert provider.breaker == httpool.Breaker(window=60.0)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"RATE_LIMIT": "lots"},
            r"HTTPOOL_OPENAI_RATE_LIMIT: RateLimit\(limit='lots'\): not a rate",
        ),
        ({"RATE_LIMIT": "0/second"}, "HTTPOOL_OPENAI_RATE_LIMIT: .*at least 1"),
        (
            {"RATE_LIMIT": "5/second", "RATE_LIMIT_STORAGE": "mysql://:hunter2@db/0"},
            "HTTPOOL_OPENAI_RATE_LIMIT_STORAGE: RateLimit\\(storage=.*expected 'memory://' or a "
            "Redis URL",
        ),
        (
            {"RATE_LIMIT_KEY": "shared"},
            "HTTPOOL_OPENAI_RATE_LIMIT_KEY is set but HTTPOOL_OPENAI_RATE_LIMIT is not",
        ),
        (
            {"RATE_LIMIT": "5/second", "RATE_LIMIT_ON_STORAGE_ERROR": "open"},
            "HTTPOOL_OPENAI_RATE_LIMIT_ON_STORAGE_ERROR='open': expected 'local' or 'closed'",
        ),
        ({"MAX_CONCURRENCY": "0"}, "HTTPOOL_OPENAI_MAX_CONCURRENCY='0': must be >= 1"),
        (
            {"RETRY": "false", "RETRY_ATTEMPTS": "3"},
            "HTTPOOL_OPENAI_RETRY_ATTEMPTS is set but HTTPOOL_OPENAI_RETRY is false",
        ),
        ({"BREAKER_WINDOW": "0"}, "HTTPOOL_OPENAI_BREAKER_WINDOW='0': must be > 0"),
        (
            {"BREAKER": "no", "BREAKER_FAILURES": "3"},
            "HTTPOOL_OPENAI_BREAKER_FAILURES is set but HTTPOOL_OPENAI_BREAKER is false",
        ),
    ],
)
def test_a_bad_policy_setting_names_the_variable(
    clean_env: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    """Each mistake is a ConfigError naming the variable, never showing a password."""
    setenv(clean_env, HTTPOOL_OPENAI_BASE_URL="https://api.openai.com/v1")
    setenv(clean_env, **{f"HTTPOOL_OPENAI_{k}": v for k, v in variables.items()})
    with pytest.raises(httpool.ConfigError, match=message) as info:
        providers_from_env()
    assert "hunter2" not in str(info.value)


def test_a_bad_policy_key_in_toml_names_the_key_and_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In TOML the error names the table's key and the file."""
    path = tmp_path / "httpool.toml"
    path.write_text(
        '[providers.voyage]\nbase_url = "https://api.voyageai.com/v1"\nrate_limit = "often"\n'
    )
    with pytest.raises(
        httpool.ConfigError,
        match=r"\[providers.voyage\] rate_limit \(in .*httpool.toml\): RateLimit",
    ):
        providers_from_env(toml_file=path)
