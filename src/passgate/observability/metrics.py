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
model names and key aliases, never a key or a body. Under the server every process of
the instance counts into a file of its own in a directory the server made (``tables``,
``series``): a scrape, whichever worker answers it, returns the sum over all of them.
Process and garbage-collector metrics describe one process, so they are exported only by
an app that is the whole instance (no directory: tests, embedding).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from passgate.exchange import Exchange
from passgate.observability.families import route_family
from passgate.observability.series import SeriesDirectory, SeriesFile
from passgate.observability.tables import (
    OTHER,
    CounterTable,
    GaugeTable,
    HistogramTable,
    SummedTables,
    Table,
)
from passgate.proxy.deployments import Health
from passgate.tasks import cancel_and_wait

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
    """The slots one kind of call is counted in, in every table."""

    requests: int
    errors: int
    interrupted: int
    bytes_in: int
    bytes_out: int
    tokens_in: int
    tokens_out: int
    tokens_cached: int
    cost: int
    unpriced: int
    latency: int
    overhead: int
    deployment: int  # -1: the call reached no deployment


GAUGE_INTERVAL = 1.0  # seconds between a worker's gauge samples, for the others' scrapes


class Metrics:
    """Every Prometheus series of one gateway; an Observer, and the ``/metrics`` route.

    ``directory``: where every process of the instance keeps its series (the server makes
    it); without one the series are this process's only.
    """

    def __init__(
        self,
        *,
        max_label_values: int = 100,
        process_metrics: bool = True,
        directory: Path | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._directory = directory
        self._series = SeriesFile(directory)
        self._values = self._series.values
        self._model = CappedLabel(max_label_values)
        self._alias = CappedLabel(max_label_values)
        self._family = _Families()
        # The slots of each kind of call seen (path, model, key alias, status): worked
        # out once instead of four label look-ups and twelve slot look-ups per call.
        self._keys: dict[tuple[str, str, str | None, str | None, int, str | None], _CallKeys] = {}
        self.requests = CounterTable(
            "passgate_requests",
            "Pass-through calls by outcome.",
            ("provider", "route_family", "model", "key_alias", "status_class"),
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
            ("provider", "model", "direction"),
        )
        self.cost = CounterTable(
            "passgate_cost_usd",
            "Cost of priced calls in US dollars.",
            ("provider", "model", "key_alias"),
        )
        self.unpriced = CounterTable(
            "passgate_unpriced_model",
            "Calls whose model has no price in the catalog.",
            ("provider", "model"),
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
        self.deployment_calls = CounterTable(
            "passgate_deployment_calls",
            "Pass-through calls by the upstream deployment that answered them.",
            ("provider", "deployment", "status_class"),
        )
        self.deployment_set_aside = CounterTable(
            "passgate_deployment_set_aside",
            "Times a deployment was set aside by an error (key_refused: its key was refused).",
            ("provider", "deployment", "error"),
        )
        self.redis_bypass = CounterTable(
            "passgate_redis_bypass",
            "Limit checks made without Redis because it failed.",
            (),
        )
        self.connections_refused = CounterTable(
            "passgate_connections_refused",
            "Client connections closed at once: the worker held its maximum.",
            (),
        )
        self.requests_rejected = CounterTable(
            "passgate_requests_rejected",
            "Client requests ended by the server before routing (head limits, timeouts).",
            ("reason",),
        )
        self.overloaded = CounterTable(
            "passgate_overloaded",
            "Pass-through calls answered 503: the worker was at its limit of calls in flight.",
            (),
        )
        self.queue_depth = GaugeTable(
            "passgate_queue_depth",
            "Rows waiting in a background writer's queue.",
            ("queue",),
        )
        # Every table declared above, in order: a new counter is one more declaration.
        tables = tuple(value for value in vars(self).values() if isinstance(value, Table))
        for table in tables:
            table.bind(self._series)
        registry.register(SummedTables(tables, SeriesDirectory(directory, self._series)))
        self._gauges: list[tuple[int, Callable[[], float]]] = []
        self._sampler: asyncio.Task[None] | None = None
        if process_metrics and directory is None:
            ProcessCollector(registry=registry)
            GCCollector(registry=registry)

    async def finished(self, ex: Exchange) -> None:
        """Count one call (in memory; never blocks)."""
        alias = _key_alias(ex)
        shape = (ex.provider, ex.upstream_path, ex.model, alias, ex.status, ex.deployment)
        keys = self._keys.get(shape)
        if keys is None:
            keys = self._call_keys(*shape)
            if len(self._keys) < SHAPES_MAX:  # paths come from clients: bounded
                self._keys[shape] = keys
        values = self._values
        values[keys.requests] += 1
        if keys.deployment >= 0:
            values[keys.deployment] += 1
        if ex.status >= 400 or ex.error is not None:
            values[keys.errors] += 1
        if ex.interrupted:
            values[keys.interrupted] += 1
        if ex.bytes_in:
            values[keys.bytes_in] += ex.bytes_in
        if ex.bytes_out:
            values[keys.bytes_out] += ex.bytes_out
        usage = ex.usage
        if usage is not None:
            if usage.prompt_tokens:
                values[keys.tokens_in] += usage.prompt_tokens
            if usage.completion_tokens:
                values[keys.tokens_out] += usage.completion_tokens
            if usage.cached_tokens:
                values[keys.tokens_cached] += usage.cached_tokens
        if ex.cost:
            values[keys.cost] += ex.cost
        if not ex.priced:
            values[keys.unpriced] += 1
        if ex.end is not None:
            self.latency.add(keys.latency, ex.end - ex.start)
        if ex.first_byte is not None:
            self.overhead.add(keys.overhead, ex.first_byte - ex.start)

    def _call_keys(
        self,
        provider: str,
        upstream_path: str,
        model_name: str | None,
        alias_name: str | None,
        status: int,
        deployment: str | None,
    ) -> _CallKeys:
        family = self._family(upstream_path)
        model = self._model(model_name)
        alias = self._alias(alias_name)
        klass = status_class(status)
        return _CallKeys(
            requests=self.requests.slot((provider, family, model, alias, klass)),
            errors=self.errors.slot((family, klass)),
            interrupted=self.interrupted.slot((family,)),
            bytes_in=self.bytes.slot((family, "in")),
            bytes_out=self.bytes.slot((family, "out")),
            tokens_in=self.tokens.slot((provider, model, "input")),
            tokens_out=self.tokens.slot((provider, model, "output")),
            tokens_cached=self.tokens.slot((provider, model, "cached")),
            cost=self.cost.slot((provider, model, alias)),
            unpriced=self.unpriced.slot((provider, model)),
            latency=self.latency.slot((family,)),
            overhead=self.overhead.slot((family,)),
            deployment=-1
            if deployment is None
            else self.deployment_calls.slot((provider, deployment, klass)),
        )

    def count_set_aside_of(self, provider: str, deployment: str, health: Health) -> None:
        """Record one deployment set aside (a pool's listener)."""
        self.deployment_set_aside.inc((provider, deployment, health.error or "unknown"))

    def count_redis_bypass(self) -> None:
        """Record one limit check that went ahead without Redis."""
        self.redis_bypass.inc(())

    def count_connection_refused(self) -> None:
        """Record one client connection refused over the worker's connection cap."""
        self.connections_refused.inc(())

    def count_request_rejected(self, reason: str) -> None:
        """Record one request ended by a server limit, ``reason`` from a fixed set."""
        self.requests_rejected.inc((reason,))

    def count_overloaded(self) -> None:
        """Record one pass-through call shed with 503."""
        self.overloaded.inc(())

    def watch_queue(self, name: str, depth: Callable[[], float]) -> None:
        """Report ``depth()`` as ``passgate_queue_depth{queue=name}`` (this process's part)."""
        self._gauges.append((self.queue_depth.slot((name,)), depth))

    def sample_gauges(self) -> None:
        """Store every watched gauge's current value, for whichever process is scraped."""
        for slot, read in self._gauges:
            self.queue_depth.set(slot, read())

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(GAUGE_INTERVAL)
            self.sample_gauges()

    async def start(self) -> None:
        """Sample the gauges every ``GAUGE_INTERVAL`` when other processes read them."""
        if self._directory is not None and self._gauges and self._sampler is None:
            self.sample_gauges()
            self._sampler = asyncio.create_task(self._sample_forever())

    async def stop(self) -> None:
        """Stop sampling; this process's gauges no longer count once it is gone."""
        await cancel_and_wait(self._sampler)
        self._sampler = None
        for slot, _ in self._gauges:
            self.queue_depth.set(slot, 0.0)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format, summed over the instance's processes."""
        self.sample_gauges()
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``."""
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)

    @property
    def routes(self) -> list[BaseRoute]:
        """Starlette routes to mount: ``GET /metrics`` (unauthenticated)."""
        return [Route("/metrics", self.endpoint, methods=["GET"], name="metrics")]
