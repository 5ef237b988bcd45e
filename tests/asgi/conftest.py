"""The ASGI layer's tests run on asyncio and on trio (anyio's pytest plugin).

Under trio a pool gives its providers httpx's own transport (httpool's runs on asyncio
only); the tests here show the lifespan, the dependencies, stream clean-up, the
shutdown drain and the error handlers behave the same on both.
"""

from __future__ import annotations

from typing import Literal

import pytest

#: What `TestClient(backend=...)` and anyio's plugin take.
Backend = Literal["asyncio", "trio"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Backend:
    """Each test runs once on asyncio and once on trio (`TestClient(backend=...)` too)."""
    backend: Backend = request.param
    return backend
