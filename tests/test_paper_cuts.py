"""Small things a newcomer trips over: messages, exports, warnings, defaults."""

from __future__ import annotations

import logging
import types

import httpx
import pytest

import httpool
from httpool import _budget, _config

pytestmark = pytest.mark.anyio


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


# -- close_client ---------------------------------------------------------------------


async def test_a_closed_client_is_not_called_unregistered() -> None:
    """After `close_client`, asking for the client says it was closed, not unknown."""
    transport = httpx.MockTransport(ok)
    async with httpool.ClientPool(
        httpool.Provider("openai", base_url="https://api.openai.test", transport=transport),
        httpool.Provider("voyage", base_url="https://api.voyage.test", transport=transport),
    ) as pool:
        assert await pool.close_client("openai") is True
        with pytest.raises(LookupError) as caught:
            pool.client("openai")
        message = str(caught.value)
        assert "no provider" not in message
        assert "close_client('openai')" in message
        assert "get_client('openai')" in message
        client = await pool.get_client("openai")
        assert pool.client("openai") is client


async def test_an_unknown_name_still_lists_the_registered_providers() -> None:
    """A name nobody registered lists every registered provider, closed ones too."""
    transport = httpx.MockTransport(ok)
    async with httpool.ClientPool(
        httpool.Provider("openai", base_url="https://api.openai.test", transport=transport),
        httpool.Provider("voyage", base_url="https://api.voyage.test", transport=transport),
    ) as pool:
        await pool.close_client("openai")
        with pytest.raises(httpool.UnknownProviderError, match="registered: openai, voyage"):
            pool.client("opnai")


# -- exports ----------------------------------------------------------------------------


def test_the_package_namespace_holds_only_public_names() -> None:
    """`httpool` shows `__all__` and its public modules; no `Any` or `annotations`."""
    # pytest's assertion rewriting adds `@py_builtins`-style names to plugin packages.
    shown = {name for name in vars(httpool) if not name.startswith(("_", "@"))}
    modules = {name for name in shown if isinstance(getattr(httpool, name), types.ModuleType)}
    assert modules <= {"testing"}
    assert shown - modules == set(httpool.__all__)
    assert "Any" not in shown
    assert "annotations" not in shown


# -- aiohttp and HTTP/2 -----------------------------------------------------------------


async def test_the_aiohttp_transport_does_not_warn_about_http2(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`transport="aiohttp"` with the default `http2=True` logs no HTTP/2 warning."""
    pytest.importorskip("httpx_aiohttp")
    caplog.set_level(logging.WARNING)
    provider = httpool.Provider("slow", base_url="https://api.slow.test", transport="aiohttp")
    assert provider.http2 is True
    async with httpool.ClientPool(provider) as pool:
        pool.client("slow")
        await pool.close_client("slow")
        await pool.get_client("slow")
    assert not [r for r in caplog.records if "HTTP/2" in r.getMessage()]


# -- httpool.limits / httpool.timeout ---------------------------------------------------


def test_limits_start_from_httpools_defaults() -> None:
    """`httpool.limits(max_connections=50)` keeps every connection alive for 30 s."""
    assert httpool.limits() == httpool.DEFAULT_LIMITS
    limits = httpool.limits(max_connections=50)
    assert limits.max_connections == 50
    assert limits.max_keepalive_connections == 50
    assert limits.keepalive_expiry == httpool.DEFAULT_LIMITS.keepalive_expiry == 30.0
    assert httpool.limits(max_connections=50, max_keepalive_connections=10) == httpx.Limits(
        max_connections=50, max_keepalive_connections=10, keepalive_expiry=30.0
    )


def test_timeout_starts_from_httpools_defaults() -> None:
    """`httpool.timeout(read=90)` changes the read timeout only."""
    assert httpool.timeout() == httpool.DEFAULT_TIMEOUT
    assert httpool.timeout(read=90) == httpx.Timeout(connect=5.0, read=90.0, write=10.0, pool=10.0)
    assert httpool.timeout(connect=2, pool=1.5).pool == 1.5


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: httpool.limits(max_connections=0), "max_connections=0"),
        (lambda: httpool.limits(max_keepalive_connections=2.5), "max_keepalive_connections=2.5"),  # type: ignore[arg-type]  # bad on purpose
        (lambda: httpool.limits(max_connections=True), "max_connections=True"),
        (lambda: httpool.limits(keepalive_expiry=-1), "keepalive_expiry=-1"),
        (lambda: httpool.timeout(read=float("nan")), "read=nan"),
        (lambda: httpool.timeout(connect=0), "connect=0"),
        (lambda: httpool.timeout(pool="10"), "pool='10'"),  # type: ignore[arg-type]  # bad on purpose
    ],
)
def test_the_helpers_refuse_bad_values_naming_the_field(call: object, field: str) -> None:
    """A bad value is a `ConfigError` that names the helper and the field."""
    assert callable(call)
    with pytest.raises(httpool.ConfigError, match=field.replace("(", r"\(")):
        call()


def test_providers_take_the_helpers() -> None:
    """A provider keeps the helpers' values as its `limits` and `timeout`."""
    provider = httpool.Provider(
        "helpers",
        base_url="https://api.example.test",
        limits=httpool.limits(max_connections=50),
        timeout=httpool.timeout(read=90),
    )
    assert provider.limits.max_keepalive_connections == 50
    assert provider.timeout.read == 90.0
    assert provider.timeout.connect == 5.0


# -- a short keep-alive -----------------------------------------------------------------


def test_a_short_keepalive_warns_once_naming_provider_and_field(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`httpx.Limits(max_connections=50)` (5 s keep-alive) warns once per provider."""
    monkeypatch.setattr(_config, "_warned_keepalive", set())
    caplog.set_level(logging.WARNING, logger="httpool")
    for _ in range(3):
        httpool.Provider(
            "short", base_url="https://a.test", limits=httpx.Limits(max_connections=50)
        )
    warned = [r.getMessage() for r in caplog.records if "keepalive_expiry" in r.getMessage()]
    assert len(warned) == 1
    assert "'short'" in warned[0]
    assert "limits.keepalive_expiry=5.0" in warned[0]
    assert "httpool.limits(" in warned[0]


@pytest.mark.parametrize(
    "limits",
    [httpool.DEFAULT_LIMITS, httpool.limits(max_connections=5), httpx.Limits(keepalive_expiry=6)],
)
def test_a_longer_keepalive_does_not_warn(
    limits: httpx.Limits, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above 5 s, nothing is logged."""
    monkeypatch.setattr(_config, "_warned_keepalive", set())
    caplog.set_level(logging.WARNING, logger="httpool")
    httpool.Provider("long", base_url="https://a.test", limits=limits)
    assert not caplog.records


def test_a_transport_instance_brings_its_own_limits_and_does_not_warn(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a transport instance the provider's limits do not apply: no warning."""
    monkeypatch.setattr(_config, "_warned_keepalive", set())
    caplog.set_level(logging.WARNING, logger="httpool")
    httpool.Provider(
        "mock", base_url="https://a.test", limits=httpx.Limits(), transport=httpx.MockTransport(ok)
    )
    assert not caplog.records


# -- several workers without WEB_CONCURRENCY ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "server", "workers"),
    [
        (["/venv/bin/gunicorn", "-w", "3", "app:app"], {}, "gunicorn", 3),
        (["/venv/bin/gunicorn", "-w3", "-k", "uvicorn_worker.UvicornWorker"], {}, "gunicorn", 3),
        (["/venv/bin/gunicorn", "--workers=4", "app:app"], {"WEB_CONCURRENCY": "2"}, "gunicorn", 4),
        (["/py/uvicorn/__main__.py", "app:app", "--workers", "2"], {}, "uvicorn", 2),
        (["/venv/bin/hypercorn", "-w", "2", "app:app"], {}, "hypercorn", 2),
        (["/venv/bin/granian", "--interface", "asgi", "--workers", "2", "a:b"], {}, "granian", 2),
    ],
)
def test_several_workers_without_web_concurrency_are_told(
    argv: list[str], env: dict[str, str], server: str, workers: int
) -> None:
    """A server started with N > 1 workers and no matching WEB_CONCURRENCY is named."""
    problem = _budget.unsplit_workers(argv, env)
    assert problem is not None
    assert f"{server} started {workers} worker processes" in problem
    assert problem.endswith(f"Set WEB_CONCURRENCY={workers} in the server's environment")


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["/venv/bin/gunicorn", "-w", "3", "app:app"], {"WEB_CONCURRENCY": "3"}),
        (["/venv/bin/gunicorn", "app:app"], {}),
        (["/venv/bin/uvicorn", "app:app", "--workers", "1"], {}),
        (["/venv/bin/pytest", "-w", "3"], {}),
        ([], {}),
    ],
)
def test_one_worker_or_a_matching_web_concurrency_is_fine(
    argv: list[str], env: dict[str, str]
) -> None:
    """One worker, a matching WEB_CONCURRENCY, or another program: nothing to say."""
    assert _budget.unsplit_workers(argv, env) is None


async def test_opening_a_pool_in_an_unsplit_worker_warns_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's opening logs the worker warning, once per process."""
    monkeypatch.setattr(_budget, "_warned_workers", [])
    monkeypatch.setattr("sys.argv", ["/venv/bin/gunicorn", "-w", "3", "app:app"])
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    caplog.set_level(logging.WARNING, logger="httpool")
    provider = httpool.Provider("w", base_url="https://a.test", transport=httpx.MockTransport(ok))
    for _ in range(2):
        async with httpool.ClientPool(provider):
            pass
    warned = [r.getMessage() for r in caplog.records if "WEB_CONCURRENCY" in r.getMessage()]
    assert len(warned) == 1
    assert "gunicorn started 3 worker processes" in warned[0]
