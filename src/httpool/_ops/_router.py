"""`router()`: opt-in operations routes for the running pool: stats, health, metrics, page."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Final

import anyio
from fastapi import APIRouter, HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .._asgi._state import get_pool
from .._errors import ConfigError
from .._pool import ClientPool, PoolState

__all__ = ["router"]

logger = logging.getLogger("httpool")

NO_STORE: Final = {"Cache-Control": "no-store"}


def router(
    *,
    prefix: str = "",
    health_timeout: float = 2.0,
    metrics: bool = True,
    status_page: bool = True,
    include_in_schema: bool = True,
) -> APIRouter:
    """Operations routes for the app's running pool, as a FastAPI `APIRouter`.

    ```python
    app.include_router(httpool.router(prefix="/httpool"))
    ```

    - `GET {prefix}/stats`: `pool.stats()` as JSON, per provider.
    - `GET {prefix}/health`: pings each provider's `health_path`, concurrently; 200
      when all answer 2xx in time, else 503. Providers without one are `"skipped"`.
    - `GET {prefix}/metrics`: Prometheus text (needs `httpool[prometheus]`, else 501).
    - `GET {prefix}/`: a status page whose gauges refresh every 1.5 s.

    The routes never show a header value or a secret (URLs have their credentials
    masked), and `/health` shows no URL at all. They have no access control of their
    own: protect them like any operations endpoint, for example with
    `app.include_router(httpool.router(...), dependencies=[Depends(check_token)])`.

    Arguments:
        prefix: where the routes go, e.g. `"/httpool"` (`""` puts the page at `/`).
        health_timeout: seconds each health ping may take, connecting included.
        metrics: serve `/metrics`.
        status_page: serve the HTML status page at `/`.
        include_in_schema: list the JSON routes in the app's OpenAPI schema (the page
            never is).
    """
    if not 0 < health_timeout < math.inf:  # also refuses NaN
        msg = f"httpool.router(health_timeout={health_timeout!r}): must be seconds > 0"
        raise ConfigError(msg)
    timeout = float(health_timeout)
    api = APIRouter(prefix=prefix, tags=["httpool"], include_in_schema=include_in_schema)

    @api.get("/stats", name="httpool_stats", summary="Connection and request counters")
    async def stats(request: Request) -> Response:
        """The pool's stats per provider: connections open, idle and in use, waiters,
        requests in flight and served, errors by kind. They are the answering worker
        process's; with `PROMETHEUS_MULTIPROC_DIR` set, the `X-Httpool-Workers` header
        says how many live workers `/metrics` adds up."""
        from ._metrics import live_workers

        headers = dict(NO_STORE)
        workers = live_workers()
        if workers is not None:
            headers["X-Httpool-Workers"] = str(workers)
        return JSONResponse(_pool_of(request).stats(), headers=headers)

    @api.get("/health", name="httpool_health", summary="Ping each provider's health_path")
    async def health(request: Request) -> Response:
        """200 when every provider with a `health_path` answered 2xx in time, else 503."""
        pool = _pool_of(request)
        results = await check_health(pool, timeout)
        failed = pool.state is not PoolState.OPEN or any(
            r["status"] == "fail" for r in results.values()
        )
        body = {"status": "fail" if failed else "ok", "providers": results}
        return JSONResponse(body, status_code=503 if failed else 200, headers=NO_STORE)

    if metrics:
        registry: list[Any] = []  # made at the first scrape, when prometheus-client is there

        @api.get(
            "/metrics",
            name="httpool_metrics",
            summary="Prometheus metrics",
            response_class=PlainTextResponse,
        )
        async def metrics_route(request: Request) -> Response:
            """The pool's stats in the Prometheus text format (OpenMetrics if asked)."""
            from ._metrics import EXTRA_HINT, make_registry, render_metrics

            pool = _pool_of(request)
            try:
                if not registry:
                    registry.append(make_registry())
                body, content_type = render_metrics(
                    registry[0], pool, request.headers.get("accept")
                )
            except ImportError:
                return PlainTextResponse(EXTRA_HINT + "\n", status_code=501)
            return Response(body, media_type=content_type, headers=NO_STORE)

    if status_page:

        @api.get("/", name="httpool_status_page", include_in_schema=False)
        async def page() -> Response:
            """The status page: live gauges per provider, read from `stats`."""
            from ._status_page import status_page_response

            return status_page_response()

    return api


def _pool_of(request: Request) -> ClientPool:
    """The request's pool; without one, the routes answer 503 saying how to set it up."""
    try:
        return get_pool(request)
    except LookupError as exc:
        raise HTTPException(503, detail=str(exc), headers=NO_STORE) from None


async def check_health(pool: ClientPool, seconds: float) -> dict[str, dict[str, Any]]:
    """Ping every registered provider that has a `health_path`, concurrently.

    Each result is `{"status": "ok" | "fail" | "skipped", "ok", "status_code",
    "latency_ms"}`, with `"error"` (an exception class name or `"timeout"`) when no
    response came, and `"breaker"` (its state and seconds to the next trial) for a
    provider with a circuit breaker. Nothing of the URL, the headers or the error text
    is included.
    """
    results: dict[str, dict[str, Any]] = {}
    async with anyio.create_task_group() as group:
        for name, provider in pool.providers.items():
            if provider.health_path is None:
                results[name] = {"status": "skipped"}
            else:
                results[name] = {}
                group.start_soon(_probe, pool, name, provider.health_path, seconds, results)
    for name, entry in pool.stats().items():
        breaker = entry.get("breaker")
        if name in results and isinstance(breaker, dict):
            results[name]["breaker"] = {k: breaker[k] for k in ("state", "retry_in")}
    return results


async def _probe(
    pool: ClientPool, name: str, path: str, seconds: float, out: dict[str, dict[str, Any]]
) -> None:
    start = time.perf_counter()
    code: int | None = None
    error: str | None = None
    try:
        with anyio.fail_after(seconds):
            response = await pool.client(name).get(path, timeout=seconds)
        code = response.status_code
    except TimeoutError:
        error = "timeout"
    except Exception as exc:  # noqa: BLE001  a probe reports every failure, never raises
        error = type(exc).__name__
        logger.debug("httpool health check of %r failed: %s", name, error, extra={"provider": name})
    ok = code is not None and 200 <= code < 300
    result: dict[str, Any] = {
        "status": "ok" if ok else "fail",
        "ok": ok,
        "status_code": code,
        "latency_ms": round((time.perf_counter() - start) * 1000, 1),
    }
    if error is not None:
        result["error"] = error
    out[name] = result
