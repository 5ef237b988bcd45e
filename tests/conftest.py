"""Fixtures shared by the tests: real upstreams on loopback (uvicorn, nginx), and the anyio
backend (asyncio; `tests/asgi/` runs on trio as well, `tests/test_trio.py` on trio only)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .nginx import Nginx, StartNginx, nginx_binary, run_nginx
from .upstream import Upstream, UpstreamServer
from .upstream import upstream_server as serve_upstream_server


@pytest.fixture
def anyio_backend() -> str:
    """httpool's transport runs on asyncio."""
    return "asyncio"


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[UpstreamServer]:
    """The provider-like HTTP/1.1 server on 127.0.0.1, one for the session."""
    with serve_upstream_server() as server:
        yield server


@pytest.fixture
def upstream(upstream_server: UpstreamServer) -> Upstream:
    """The session's upstream, with a fresh record of the connections and requests it
    sees in this test (a test that needs a server of its own uses `serve_upstream()`)."""
    return upstream_server.fresh()


@pytest.fixture
def start_nginx(tmp_path: Path) -> Iterator[StartNginx]:
    """Start nginx with per-test settings (`start_nginx(keepalive_requests=5, ...)`); stopped after.

    Skips the test when nginx is not installed. See `tests/nginx.py` for the settings.
    """
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx); .ci/run installs it")
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:

        def start(**settings: Any) -> Nginx:
            folder = tmp_path / f"nginx-{next(numbers)}"
            return stack.enter_context(run_nginx(folder, **settings))

        yield start


@pytest.fixture
def nginx(start_nginx: StartNginx) -> Nginx:
    """nginx with its default settings (see `tests/nginx.py`), HTTP/1.1 and TLS + HTTP/2."""
    return start_nginx()
