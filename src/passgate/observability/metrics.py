"""Prometheus metrics in a registry of the app's own, served at ``GET /metrics``.

Each ``Metrics`` owns a ``CollectorRegistry``: two gateways in one process never
share or clash over a series. Label values are bounded: the route family comes
from a fixed list, and models and key aliases past the first ``max_label_values``
distinct ones are counted as ``other``.

Gateway overhead is measured from the request's arrival to the upstream's first
response byte (``Exchange.first_byte - Exchange.start``): authentication, guards,
reading what the gateway inspects of the body, the upstream connection, *and* the
upstream's own time to first byte. The Exchange does not record when the request
left for the upstream, so the upstream's share cannot be subtracted; the figure is
an upper bound on the gateway's overhead, tight when the upstream answers fast.

``GET /metrics`` needs no key (as Prometheus scrapers expect); it exposes counts,
model names and key aliases, never a key or a body. With ``--workers N`` each
process has its own registry, and a scrape reaches one worker.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from passgate.exchange import Exchange
from passgate.observability.families import route_family

OTHER = "other"
NONE = "none"
MAX_LABEL_LENGTH = 64

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
OVERHEAD_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class CappedLabel:
    """Passes the first ``limit`` distinct values through, then answers ``other``."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        """The label value to use for ``value``."""
        if not value:
            return NONE
        value = value[:MAX_LABEL_LENGTH]
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value


class CounterTable:
    """A counter family kept as plain numbers per label tuple, exported at scrape time.

    prometheus_client's ``Counter`` checks itself and takes a lock on every ``inc`` (~1 µs,
    and more under load, where its code competes for the CPU caches with the relay's): per
    call the gateway counts up to seven series, and the three of accounting alone (tokens
    in and out, cost) cost ~4% of throughput at 64 clients. Here an ``inc`` is one dict
    update on the event loop, the only thread that counts; ``/metrics`` (served on the same
    loop) reads a snapshot. Label values must already be bounded (``CappedLabel``).
    """

    __slots__ = ("documentation", "labels", "name", "values")

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        """Add ``amount`` to the series of these label values (in ``labels`` order)."""
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def family(self) -> CounterMetricFamily:
        """The family as prometheus_client exports it (``<name>_total`` samples)."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in list(self.values.items()):
            family.add_metric(key, value)
        return family


class HistogramTable:
    """A histogram family kept as plain bucket counts per label tuple, exported at scrape time.

    For the same reason as ``CounterTable``: prometheus_client's ``Histogram.observe``
    takes a lock for its sum and for its bucket (~0.9 µs per observation here, two per
    call); here it is a ``bisect`` and two additions (~0.3 µs). Buckets are counted
    singly and made cumulative when exported.
    """

    __slots__ = ("bounds", "documentation", "labels", "le", "name", "values")

    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.bounds = (*buckets, float("inf"))
        # as prometheus_client writes them for these bounds (checked by a test against it)
        self.le = (*(repr(float(bound)) for bound in buckets), "+Inf")
        # per label tuple: the count of each bucket (not cumulative), and the sum
        self.values: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, key: tuple[str, ...], amount: float) -> None:
        """Count ``amount`` in the series of these label values (in ``labels`` order)."""
        series = self.values.get(key)
        if series is None:
            series = self.values[key] = ([0] * len(self.bounds), [0.0])
        series[0][bisect_left(self.bounds, amount)] += 1
        series[1][0] += amount

    def family(self) -> HistogramMetricFamily:
        """The family as prometheus_client exports it (``_bucket``, ``_sum``, ``_count``)."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, (counts, total) in list(self.values.items()):
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for le, count in zip(self.le, counts, strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(key, buckets, total[0])
        return family


class _Tables(Collector):
    """Exports ``CounterTable`` and ``HistogramTable`` families from a registry."""

    def __init__(self, tables: tuple[CounterTable | HistogramTable, ...]) -> None:
        self._tables = tables

    def collect(self) -> Iterator[Metric]:
        """Every table's family, as the registry scrapes collectors."""
        for table in self._tables:
            yield table.family()


class _Families:
    """``route_family`` memoised per upstream path, for the first ``limit`` paths seen."""

    __slots__ = ("_known", "_limit")

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit
        self._known: dict[str, str] = {}

    def __call__(self, upstream_path: str) -> str:
        """The route family of ``upstream_path``."""
        family = self._known.get(upstream_path)
        if family is None:
            family = route_family(upstream_path)
            if len(self._known) < self._limit:  # paths come from clients: bounded
                self._known[upstream_path] = family
        return family


SHAPES_MAX = 4096  # kinds of call whose label tuples are kept
_STATUS_CLASSES = tuple(f"{status // 100}xx" for status in range(100, 600))


def status_class(status: int) -> str:
    """``2xx``, ``4xx``, ...; ``none`` when no response status was reached."""
    return _STATUS_CLASSES[status - 100] if 100 <= status <= 599 else NONE


def _key_alias(ex: Exchange) -> str | None:
    principal = ex.principal
    if principal is None:
        return None
    if principal.kind != "virtual":
        return principal.kind  # "master" or "open"
    return principal.key_alias or "unaliased"


@dataclass(frozen=True, slots=True)
class _CallKeys:
    """The label tuples one kind of call is counted under, in every table."""

    requests: tuple[str, ...]
    errors: tuple[str, ...]
    family: tuple[str, ...]
    bytes_in: tuple[str, ...]
    bytes_out: tuple[str, ...]
    tokens_in: tuple[str, ...]
    tokens_out: tuple[str, ...]
    tokens_cached: tuple[str, ...]
    cost: tuple[str, ...]
    unpriced: tuple[str, ...]


class Metrics:
    """Every Prometheus series of one gateway; an Observer, and the ``/metrics`` route."""

    def __init__(self, *, max_label_values: int = 100, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._model = CappedLabel(max_label_values)
        self._alias = CappedLabel(max_label_values)
        self._family = _Families()
        # The label tuples of each kind of call seen (path, model, key alias, status):
        # worked out once instead of four label look-ups and ten tuples per call.
        self._keys: dict[tuple[str, str | None, str | None, int], _CallKeys] = {}
        self.requests = CounterTable(
            "passgate_requests",
            "Pass-through calls by outcome.",
            ("route_family", "model", "key_alias", "status_class"),
        )
        self.errors = CounterTable(
            "passgate_errors",
            "Calls answered with 4xx/5xx or that failed mid-way.",
            ("route_family", "status_class"),
        )
        self.interrupted = CounterTable(
            "passgate_interrupted",
            "Calls cut short by the client or the upstream.",
            ("route_family",),
        )
        self.tokens = CounterTable(
            "passgate_tokens",
            "Tokens reported by the upstream; cached is part of input.",
            ("model", "direction"),
        )
        self.cost = CounterTable(
            "passgate_cost_usd",
            "Cost of priced calls in US dollars.",
            ("model", "key_alias"),
        )
        self.unpriced = CounterTable(
            "passgate_unpriced_model",
            "Calls whose model has no price in the catalog.",
            ("model",),
        )
        self.bytes = CounterTable(
            "passgate_bytes",
            "Body bytes relayed; in = from the client, out = to the client.",
            ("route_family", "direction"),
        )
        self.latency = HistogramTable(
            "passgate_request_duration_seconds",
            "Arrival to last byte relayed.",
            ("route_family",),
            LATENCY_BUCKETS,
        )
        self.overhead = HistogramTable(
            "passgate_gateway_overhead_seconds",
            "Arrival to the upstream's first byte (an upper bound on gateway overhead).",
            ("route_family",),
            OVERHEAD_BUCKETS,
        )
        registry.register(
            _Tables(
                (
                    self.requests,
                    self.errors,
                    self.interrupted,
                    self.tokens,
                    self.cost,
                    self.unpriced,
                    self.bytes,
                    self.latency,
                    self.overhead,
                )
            )
        )
        self.redis_bypass = Counter(
            "passgate_redis_bypass",
            "Limit checks made without Redis because it failed.",
            registry=registry,
        )
        self.connections_refused = Counter(
            "passgate_connections_refused",
            "Client connections closed at once: the worker held its maximum.",
            registry=registry,
        )
        self.requests_rejected = Counter(
            "passgate_requests_rejected",
            "Client requests ended by the server before routing (head limits, timeouts).",
            ("reason",),
            registry=registry,
        )
        self.overloaded = Counter(
            "passgate_overloaded",
            "Pass-through calls answered 503: the worker was at its limit of calls in flight.",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "passgate_queue_depth",
            "Rows waiting in a background writer's queue.",
            ("queue",),
            registry=registry,
        )
        if process_metrics:
            ProcessCollector(registry=registry)
            GCCollector(registry=registry)

    async def finished(self, ex: Exchange) -> None:
        """Count one call (in memory; never blocks)."""
        alias = _key_alias(ex)
        shape = (ex.upstream_path, ex.model, alias, ex.status)
        keys = self._keys.get(shape)
        if keys is None:
            keys = self._call_keys(ex.upstream_path, ex.model, alias, ex.status)
            if len(self._keys) < SHAPES_MAX:  # paths come from clients: bounded
                self._keys[shape] = keys
        self.requests.inc(keys.requests)
        if ex.status >= 400 or ex.error is not None:
            self.errors.inc(keys.errors)
        if ex.interrupted:
            self.interrupted.inc(keys.family)
        if ex.bytes_in:
            self.bytes.inc(keys.bytes_in, ex.bytes_in)
        if ex.bytes_out:
            self.bytes.inc(keys.bytes_out, ex.bytes_out)
        usage = ex.usage
        if usage is not None:
            if usage.prompt_tokens:
                self.tokens.inc(keys.tokens_in, usage.prompt_tokens)
            if usage.completion_tokens:
                self.tokens.inc(keys.tokens_out, usage.completion_tokens)
            if usage.cached_tokens:
                self.tokens.inc(keys.tokens_cached, usage.cached_tokens)
        if ex.cost:
            self.cost.inc(keys.cost, ex.cost)
        if not ex.priced:
            self.unpriced.inc(keys.unpriced)
        if ex.end is not None:
            self.latency.observe(keys.family, ex.end - ex.start)
        if ex.first_byte is not None:
            self.overhead.observe(keys.family, ex.first_byte - ex.start)

    def _call_keys(
        self, upstream_path: str, model_name: str | None, alias_name: str | None, status: int
    ) -> _CallKeys:
        family = self._family(upstream_path)
        model = self._model(model_name)
        alias = self._alias(alias_name)
        klass = status_class(status)
        return _CallKeys(
            requests=(family, model, alias, klass),
            errors=(family, klass),
            family=(family,),
            bytes_in=(family, "in"),
            bytes_out=(family, "out"),
            tokens_in=(model, "input"),
            tokens_out=(model, "output"),
            tokens_cached=(model, "cached"),
            cost=(model, alias),
            unpriced=(model,),
        )

    def count_redis_bypass(self) -> None:
        """Record one limit check that went ahead without Redis."""
        self.redis_bypass.inc()

    def count_connection_refused(self) -> None:
        """Record one client connection refused over the worker's connection cap."""
        self.connections_refused.inc()

    def count_request_rejected(self, reason: str) -> None:
        """Record one request ended by a server limit, ``reason`` from a fixed set."""
        self.requests_rejected.labels(reason).inc()

    def count_overloaded(self) -> None:
        """Record one pass-through call shed with 503."""
        self.overloaded.inc()

    def watch_queue(self, name: str, depth: Callable[[], float]) -> None:
        """Report ``depth()`` as ``passgate_queue_depth{queue=name}`` at every scrape."""
        self.queue_depth.labels(name).set_function(depth)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``."""
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)

    @property
    def routes(self) -> list[BaseRoute]:
        """Starlette routes to mount: ``GET /metrics`` (unauthenticated)."""
        return [Route("/metrics", self.endpoint, methods=["GET"], name="metrics")]
