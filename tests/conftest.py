"""Fixtures shared by the tests: a real upstream on loopback, and the anyio backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .upstream import Upstream, serve_upstream


@pytest.fixture
def anyio_backend() -> str:
    """httpool's transport runs on asyncio."""
    return "asyncio"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A provider-like HTTP/1.1 server on 127.0.0.1 that counts its connections."""
    with serve_upstream() as server:
        yield server
