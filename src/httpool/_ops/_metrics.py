"""Prometheus metrics of a pool, built from `pool.stats()` at scrape time.

`prometheus-client` is optional (`pip install 'httpool[prometheus]'`): this module
imports it only when metrics are collected, so importing httpool never needs it.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._asgi._state import get_pool
from .._pool import ClientPool

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = [
    "EXTRA_HINT",
    "PoolCollector",
    "live_workers",
    "multiprocess_dir",
    "publish_metrics",
    "render_metrics",
]

logger = logging.getLogger("httpool")

EXTRA_HINT: Final = (
    "Prometheus metrics need the prometheus-client package: pip install 'httpool[prometheus]'"
)

#: (key in `pool.stats()`, metric name, help): levels, read as gauges.
GAUGES: Final = (
    ("connections_open", "httpool_connections_open", "Open connections, idle or in use."),
    ("connections_idle", "httpool_connections_idle", "Open connections waiting for a request."),
    ("connections_in_use", "httpool_connections_in_use", "Connections carrying a request."),
    ("connections_connecting", "httpool_connections_connecting", "Connections being set up."),
    ("max_connections", "httpool_connections_max", "The provider's max_connections limit."),
    ("requests_in_flight", "httpool_requests_in_flight", "Requests sent, response not closed."),
    ("waiters", "httpool_waiters", "Requests waiting for a free connection."),
)
#: (key in `pool.stats()`, metric name without `_total`, help): running totals.
COUNTERS: Final = (
    ("requests_served", "httpool_requests_served", "Responses read or closed."),
    ("connections_opened", "httpool_connections_opened", "Connections opened."),
    ("connections_closed", "httpool_connections_closed", "Connections closed."),
    ("retries", "httpool_retries", "Requests retried on a fresh connection."),
)

#: The pool of the scrape in progress, for the router's collector.
_scraped: contextvars.ContextVar[ClientPool | None] = contextvars.ContextVar(
    "httpool_scraped_pool", default=None
)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def metric_families(stats: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """The metric families of one `pool.stats()`, one sample per provider (and error kind).

    A key that a provider's transport does not report (httpx's own transport reports
    none of the connection counters) gives no sample for it.
    """
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        InfoMetricFamily,
    )

    info = InfoMetricFamily(
        "httpool_provider",
        "A provider's client: its transport and HTTP/2 setting.",
        labels=["provider"],
    )
    for name, entry in stats.items():
        info.add_metric(
            [name],
            {"transport": str(entry.get("transport", "")), "http2": str(bool(entry.get("http2")))},
        )
    yield info
    families: list[tuple[type[GaugeMetricFamily | CounterMetricFamily], tuple[str, str, str]]]
    families = [(GaugeMetricFamily, row) for row in GAUGES]
    families += [(CounterMetricFamily, row) for row in COUNTERS]
    for family, (key, metric, text) in families:
        per_provider = family(metric, text, labels=["provider"])
        for name, entry in stats.items():
            value = _number(entry.get(key))
            if value is not None:
                per_provider.add_metric([name], value)
        yield per_provider
    errors = CounterMetricFamily(
        "httpool_errors", "Failed requests, by httpx exception class.", labels=["provider", "kind"]
    )
    for name, entry in stats.items():
        by_kind = entry.get("errors")
        if isinstance(by_kind, Mapping):
            for kind, count in sorted(by_kind.items()):
                value = _number(count)
                if value is not None:
                    errors.add_metric([name, str(kind)], value)
    yield errors
    yield from policy_families(stats)


#: (key in `pool.stats()`, metric name without `_total`, label, help): counts by a label.
LABELLED_COUNTERS: Final = (
    (
        "answers",
        "httpool_answers",
        "status",
        "Answers by status class (2xx...5xx), and 429 and 503 on their own.",
    ),
    (
        "retries_by_reason",
        "httpool_retries_by_reason",
        "reason",
        "Answers or connect failures retried by the provider's retry policy, by reason.",
    ),
    (
        "not_retried",
        "httpool_not_retried",
        "reason",
        "Retryable answers returned without a retry, by why (budget, deadline, ...).",
    ),
    (
        "limit_wait_seconds",
        "httpool_limit_wait_seconds",
        "limit",
        "Seconds requests spent waiting on the concurrency limit, the rate limit, or the "
        "provider's announced reset.",
    ),
)
BREAKER_STATES: Final = ("closed", "open", "half_open")
STORAGE_STATES: Final = ("ok", "fallback", "closed")


def _labelled_counters(stats: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily

    for key, metric, label, text in LABELLED_COUNTERS:
        family = CounterMetricFamily(metric, text, labels=["provider", label])
        for name, entry in stats.items():
            counts = entry.get(key)
            if isinstance(counts, Mapping):
                for which, count in sorted(counts.items()):
                    value = _number(count)
                    if value is not None:
                        family.add_metric([name, str(which)], value)
        yield family


def policy_families(stats: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """The metric families of the providers' policies: answers, retries, limits, breaker."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    yield from _labelled_counters(stats)
    waiting = GaugeMetricFamily(
        "httpool_limit_waiting",
        "Requests waiting for the concurrency limit or the rate limit.",
        labels=["provider", "limit"],
    )
    block = GaugeMetricFamily(
        "httpool_provider_block_seconds",
        "Seconds until the reset the provider announced (0: none in force).",
        labels=["provider"],
    )
    breaker = GaugeMetricFamily(
        "httpool_breaker_state",
        "The circuit breaker's state: 1 for the current one.",
        labels=["provider", "state"],
    )
    opened = CounterMetricFamily(
        "httpool_breaker_opened", "Times the circuit breaker opened.", labels=["provider"]
    )
    storage = GaugeMetricFamily(
        "httpool_rate_limit_storage",
        "The rate limit's shared storage: 1 for its current state (ok, fallback, closed).",
        labels=["provider", "state"],
    )
    for name, entry in stats.items():
        for limit in ("concurrency", "rate_limit"):
            part = entry.get(limit)
            if isinstance(part, Mapping) and _number(part.get("waiting")) is not None:
                waiting.add_metric([name, limit], float(part["waiting"]))
        provider_block = entry.get("provider_block")
        if isinstance(provider_block, Mapping):
            block.add_metric([name], float(provider_block.get("seconds_left") or 0))
        part = entry.get("breaker")
        if isinstance(part, Mapping):
            for state in BREAKER_STATES:
                breaker.add_metric([name, state], float(part.get("state") == state))
            opened.add_metric([name], float(part.get("opened") or 0))
        part = entry.get("rate_limit")
        if isinstance(part, Mapping) and part.get("storage") == "redis":
            for state in STORAGE_STATES:
                storage.add_metric([name, state], float(part.get("state") == state))
    yield from (waiting, block, breaker, opened, storage)


class PoolCollector:
    """A `prometheus_client` collector of a pool's stats, read at each scrape.

    For apps that already serve metrics from their own registry:

    ```python
    prometheus_client.REGISTRY.register(httpool.PoolCollector(app))
    ```

    Arguments:
        source: a `ClientPool`, or what `httpool.get_pool()` takes (the app); while no
            pool runs, a scrape has no httpool samples.
    """

    def __init__(self, source: ClientPool | Any) -> None:
        self._source = source

    def _pool(self) -> ClientPool | None:
        if isinstance(self._source, ClientPool):
            return self._source
        try:
            return get_pool(self._source)
        except LookupError:
            return None

    def collect(self) -> Iterator[Metric]:
        """The metric families of the pool's current stats."""
        pool = self._pool()
        if pool is not None:
            yield from metric_families(pool.stats())

    def describe(self) -> list[Metric]:
        """Nothing: the samples depend on the pool at scrape time."""
        return []


class _ScrapeCollector(PoolCollector):
    """The router's collector: the pool is the one of the request being answered."""

    def __init__(self) -> None:
        super().__init__(None)

    def _pool(self) -> ClientPool | None:
        return _scraped.get()


def make_registry() -> CollectorRegistry:
    """A registry of its own for one router, whose collector reads the scraped pool.

    With `PROMETHEUS_MULTIPROC_DIR` set, it reads every worker process's files instead
    (prometheus-client's multiprocess mode), to which each worker publishes its pool.
    Raises `ImportError` when prometheus-client is not installed.
    """
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ScrapeCollector())
    return registry


# -- several worker processes ----------------------------------------------------------

PUBLISH_EVERY: Final = 1.0  # seconds between a worker's publications
_PID_FILE: Final = re.compile(r"_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    """prometheus-client's multiprocess directory, when the deployment set one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def live_workers() -> int | None:
    """How many live processes have published metrics (`None` without multiprocess mode)."""
    directory = multiprocess_dir()
    if not directory:
        return None
    pids: set[int] = set()
    for path in glob.glob(os.path.join(directory, "*.db")):
        match = _PID_FILE.search(path)
        if match:
            pids.add(int(match.group(1)))
    alive = 0
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        alive += 1
    return alive


class _Publisher:
    """Mirrors this process's pool stats into prometheus-client's multiprocess files:
    counters as counters (summed over every worker, dead ones included, so totals never
    go down), levels as gauges summed over the live workers."""

    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def _metric(self, kind: str, name: str, text: str, labels: tuple[str, ...]) -> Any:
        metric = self._metrics.get(name)
        if metric is None:
            from prometheus_client import Counter, Gauge

            if kind == "counter":
                metric = Counter(name, text, labels, registry=None)
            else:
                metric = Gauge(name, text, labels, registry=None, multiprocess_mode="livesum")
            self._metrics[name] = metric
        return metric

    def publish(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        for family in metric_families(stats):
            kind = family.type
            for sample in family.samples:
                labels = dict(sample.labels)
                if kind == "info":  # one live gauge of 1 per provider and setting
                    name, kind_now = family.name + "_info", "gauge"
                elif kind == "counter":
                    if not sample.name.endswith("_total"):
                        continue
                    name, kind_now = family.name, "counter"
                else:
                    name, kind_now = family.name, "gauge"
                metric = self._metric(kind_now, name, family.documentation, tuple(labels))
                child = metric.labels(**labels) if labels else metric
                if kind_now == "gauge":
                    child.set(sample.value)
                    continue
                key = (name, tuple(sorted(labels.items())))
                delta = sample.value - self._last.get(key, 0.0)
                if delta < 0:  # the pool was opened again: its counts start from 0
                    delta = sample.value
                if delta > 0:
                    child.inc(delta)
                self._last[key] = sample.value


_publisher: _Publisher | None = None


def publish(pool: ClientPool) -> None:
    """Write this worker's pool into the multiprocess files (a no-op without them)."""
    global _publisher  # noqa: PLW0603  one per process, like the files it writes
    if not multiprocess_dir():
        return
    if _publisher is None:
        _publisher = _Publisher()
    _publisher.publish(pool.stats())


@contextlib.asynccontextmanager
async def publish_metrics(pool: ClientPool) -> AsyncIterator[None]:
    """While the app runs, publish its pool every second when `PROMETHEUS_MULTIPROC_DIR`
    is set (and prometheus-client is installed); otherwise do nothing."""
    if not multiprocess_dir():
        yield
        return
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        yield
        return

    async def loop() -> None:
        while True:
            await anyio.sleep(PUBLISH_EVERY)
            try:
                publish(pool)
            except Exception:  # a metrics failure never stops the app
                logger.exception("httpool could not publish its metrics")

    async with anyio.create_task_group() as group:
        group.start_soon(loop)
        try:
            yield
        finally:
            group.cancel_scope.cancel()
    with contextlib.suppress(Exception):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def render_metrics(
    registry: CollectorRegistry, pool: ClientPool, accept: str | None
) -> tuple[bytes, str]:
    """The exposition of `pool` through `registry`, and its content type.

    The format follows the scraper's `Accept` header: OpenMetrics when it asks for it,
    else Prometheus text.
    """
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    publish(pool)  # with several workers, the one scraped is up to date
    token = _scraped.set(pool)
    try:
        return encoder(registry), content_type
    finally:
        _scraped.reset(token)
