"""pytest plugin that runs httpx's own test suite on httpool's transport.

Loaded by `python -m tests.conformance` into a pytest run inside the unpacked httpx
sdist (`-p pool_transport_plugin`, with this folder on `PYTHONPATH`: the sdist has a
package named `tests` of its own, so this module cannot be imported as
`tests.conformance.pool_transport_plugin` there). The downloaded files are never edited.

What it does, steered by two environment variables:

- `HTTPOOL_CONFORMANCE_TRANSPORT=pool` swaps the transport: for the whole run,
  `httpx.AsyncClient.__init__` is wrapped so that a client built without `transport=`
  gets `httpool.PoolTransport(verify=, cert=, trust_env=, http1=, http2=, limits=)`
  from the client's own arguments, which is exactly where httpx would have built its
  stock `httpx.AsyncHTTPTransport`. With `trust_env`, that PoolTransport reads the
  proxy variables of the environment itself (httpx mounts them only for a client built
  without a transport). The mounts httpx makes for a client's `proxy=` argument are
  httpx's own transports, built on a path this plugin leaves alone, and sync clients
  keep httpx's transport (httpool has no sync one). With `stock` (the default) nothing
  is swapped, which is the baseline run.
- `HTTPOOL_CONFORMANCE_REPORT=<path>` writes every test's outcome (`passed`,
  `failed`, `skipped`) and the deselected tests as JSON, for the runner to compare
  the two runs.

Tests parametrised over anyio's trio backend are deselected: httpool's transport runs
on asyncio only, so the trio variants say nothing about it.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from httpool import PoolTransport

TRANSPORT = os.environ.get("HTTPOOL_CONFORMANCE_TRANSPORT", "stock")
REPORT = os.environ.get("HTTPOOL_CONFORMANCE_REPORT")

_outcomes: dict[str, str] = {}
_deselected: list[str] = []
_built = 0  # PoolTransports built by the swap: the runner checks the swap took effect
_original_init = httpx.AsyncClient.__init__


def _pool_transport_init() -> Any:
    """`httpx.AsyncClient.__init__`, building a `PoolTransport` when no transport is given."""
    signature = inspect.signature(_original_init)

    @functools.wraps(_original_init)
    def init(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        if given["transport"] is None:
            global _built  # noqa: PLW0603
            _built += 1
            kwargs["transport"] = PoolTransport(
                verify=given["verify"],
                cert=given["cert"],
                trust_env=given["trust_env"],
                http1=given["http1"],
                http2=given["http2"],
                limits=given["limits"],
            )
        _original_init(self, *args, **kwargs)

    return init


def pytest_configure(config: pytest.Config) -> None:
    """Swap the transport for the run when asked to."""
    if TRANSPORT == "pool":
        httpx.AsyncClient.__init__ = _pool_transport_init()  # type: ignore[method-assign]
    elif TRANSPORT != "stock":
        msg = f"HTTPOOL_CONFORMANCE_TRANSPORT must be 'stock' or 'pool', not {TRANSPORT!r}"
        raise pytest.UsageError(msg)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put httpx's own `AsyncClient.__init__` back."""
    httpx.AsyncClient.__init__ = _original_init  # type: ignore[method-assign]


def pytest_report_header(config: pytest.Config) -> str:
    """Say which transport async clients get in this run."""
    built = "httpool.PoolTransport" if TRANSPORT == "pool" else "httpx.AsyncHTTPTransport"
    return f"httpool conformance: httpx.AsyncClient() builds {built}; trio variants deselected"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the trio variants of anyio-parametrised tests (httpool runs on asyncio)."""
    keep: list[pytest.Item] = []
    trio: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("anyio_backend") if callspec is not None else None
        (trio if backend == "trio" else keep).append(item)
    if trio:
        config.hook.pytest_deselected(items=trio)
        items[:] = keep


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Record what was deselected (trio variants here, `-m "not network"` by the runner)."""
    _deselected.extend(item.nodeid for item in items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record each test's outcome: failed if any phase failed, else skipped or passed."""
    previous = _outcomes.get(report.nodeid)
    if previous == "failed":
        return
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped:
        _outcomes[report.nodeid] = "skipped"
    elif report.when == "call" and report.passed:
        _outcomes[report.nodeid] = "passed"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the outcomes for the runner."""
    if REPORT:
        data = {"outcomes": _outcomes, "deselected": sorted(_deselected), "built": _built}
        Path(REPORT).write_text(json.dumps(data, indent=1, sort_keys=True))
