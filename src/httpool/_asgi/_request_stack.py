"""The one place httpool reads a private detail of another library: FastAPI's request
exit stack, a measured speed-up of the route dependency.

`httpool.client(name)` must close the responses a route leaves open once the response
has been sent. The public way is a dependency with `yield`, and httpool has one
(`YieldClientDependency`). FastAPI pays for each `yield` dependency of a request: an
`asynccontextmanager`, a second one that shields its exit, a cancel scope entered on
the request's stack, a checkpoint. Counted by valgrind end to end (`python -m
bench.instructions`, the bench's app under uvicorn), that is about 140,000 machine
instructions a request, the same for a dependency that does nothing but `yield`: some
12 % of a request that calls an upstream, and as much of the end-to-end throughput.

FastAPI runs each request inside an `AsyncExitStack` that it closes after the
response has been sent, and keeps it in the ASGI scope under `fastapi_inner_astack`;
its own `yield` dependencies exit on that very stack. A plain dependency that pushes
its clean-up onto it gets the same order and timing without the wrapping. That key is
not public API, so:

- it is read here only, and only on the FastAPI versions whose behaviour was checked
  (`FASTAPI_CHECKED`: the request stack as it has been since 0.121);
- `tests/asgi/test_request_stack.py` fails when the installed FastAPI stops keeping an
  `AsyncExitStack` under that key, or closes it before the response is sent or in
  another context;
- on an older FastAPI, or with `HTTPOOL_PUBLIC_DEPENDENCY=1` in the environment when
  the routes are declared, the route dependency is the `yield` one;
- a request that finds no stack under the key (a FastAPI that changed it) still gets
  its client, and httpool logs a warning, once, that responses its routes leave open
  are not closed at the route's end and that `HTTPOOL_PUBLIC_DEPENDENCY=1` restores it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AsyncExitStack
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

__all__ = ["FASTAPI_CHECKED", "request_stack", "stack_dependency_enabled"]

#: The FastAPI versions whose request exit stack behaves as the tests check: from 0.121
#: (a request stack and a function stack, yield dependencies exiting after the response).
FASTAPI_CHECKED: Final = (0, 121)
KEY: Final = "fastapi_inner_astack"


def _fastapi_version() -> tuple[int, ...] | None:
    try:
        text = version("fastapi")
    except PackageNotFoundError:  # pragma: no cover - fastapi is a dependency
        return None
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def stack_dependency_enabled() -> bool:
    """Whether the route dependency may use FastAPI's request stack (checked once per
    dependency, when the route is declared)."""
    if os.environ.get("HTTPOOL_PUBLIC_DEPENDENCY", "") not in ("", "0"):
        return False
    found = _fastapi_version()
    return found is not None and found >= FASTAPI_CHECKED


def request_stack(scope: Mapping[str, Any]) -> AsyncExitStack | None:
    """FastAPI's exit stack of the request running in `scope`, if it has one."""
    stack = scope.get(KEY)
    return stack if isinstance(stack, AsyncExitStack) else None
