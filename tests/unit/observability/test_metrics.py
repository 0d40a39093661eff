"""Prometheus metrics: fed synthetic Exchanges, read back through GET /metrics and the parser."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from passgate.exchange import Exchange, Usage
from passgate.observability.metrics import (
    LATENCY_BUCKETS,
    OVERHEAD_BUCKETS,
    SHAPES_MAX,
    CappedLabel,
    Metrics,
    status_class,
)
from passgate.observability.series import SeriesDirectory, SeriesFile
from passgate.observability.tables import HistogramTable, SummedTables
from passgate.principal import MASTER, Principal

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def make_exchange(
    path: str = "/v1/chat/completions",
    *,
    method: str = "POST",
    status: int = 200,
    model: str | None = "mistral-small-latest",
    alias: str | None = "team-a",
    usage: Usage | None = None,
    cost: float | None = None,
    priced: bool = True,
    interrupted: bool = False,
    error: str | None = None,
    ttfb: float | None = 0.05,
    latency: float | None = 0.25,
    bytes_in: int = 0,
    bytes_out: int = 0,
) -> Exchange:
    start = 1000.0
    ex = Exchange(
        request_id="req-1",
        method=method,
        route="/mistral" + path,
        upstream_path=path,
        provider="mistral",
        start_time=1_700_000_000.0,
        start=start,
    )
    ex.principal = Principal(kind="virtual", token="hash", key_alias=alias)
    ex.model, ex.status, ex.usage, ex.cost, ex.priced = model, status, usage, cost, priced
    ex.interrupted, ex.error, ex.bytes_in, ex.bytes_out = interrupted, error, bytes_in, bytes_out
    ex.first_byte = None if ttfb is None else start + ttfb
    ex.end = None if latency is None else start + latency
    return ex


async def scrape(metrics: Metrics) -> tuple[dict[str, Any], Samples]:
    """GET /metrics through the Starlette route; parse it with the official parser."""
    app = Starlette(routes=metrics.routes)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/metrics",
        "raw_path": b"/metrics",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return start, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_endpoint_counts_fed_exchanges() -> None:
    metrics = Metrics()
    chat = Usage(prompt_tokens=10, completion_tokens=20, cached_tokens=4)
    await metrics.finished(make_exchange(usage=chat, cost=0.5, bytes_in=100, bytes_out=300))
    await metrics.finished(make_exchange(usage=chat, cost=0.25, latency=1.5, ttfb=0.5))
    await metrics.finished(
        make_exchange(interrupted=True, error="client disconnected", usage=None, cost=None)
    )
    await metrics.finished(make_exchange("/v1/embeddings", status=502, model="mistral-embed"))
    await metrics.finished(make_exchange("/v1/files", method="GET", model=None, ttfb=None))
    await metrics.finished(make_exchange(model="my-own-model", priced=False))
    master = make_exchange("/v1/models", method="GET", model=None, status=401)
    master.principal = MASTER
    await metrics.finished(master)

    start, samples = await scrape(metrics)

    assert start["status"] == 200
    content_type = dict(start["headers"])[b"content-type"]
    assert content_type.startswith(b"text/plain")
    chat_ok = {
        "provider": "mistral",
        "route_family": "chat",
        "model": "mistral-small-latest",
        "key_alias": "team-a",
    }
    assert value(samples, "passgate_requests_total", **chat_ok, status_class="2xx") == 3
    emb = {
        "provider": "mistral",
        "route_family": "embeddings",
        "model": "mistral-embed",
        "key_alias": "team-a",
    }
    assert value(samples, "passgate_requests_total", **emb, status_class="5xx") == 1
    files = {"provider": "mistral", "route_family": "files", "model": "none", "key_alias": "team-a"}
    assert value(samples, "passgate_requests_total", **files, status_class="2xx") == 1
    models = {
        "provider": "mistral",
        "route_family": "models",
        "model": "none",
        "key_alias": "master",
    }
    assert value(samples, "passgate_requests_total", **models, status_class="4xx") == 1
    assert value(samples, "passgate_errors_total", route_family="embeddings", status_class="5xx")
    assert value(samples, "passgate_errors_total", route_family="chat", status_class="2xx") == 1
    assert value(samples, "passgate_errors_total", route_family="models", status_class="4xx") == 1
    assert value(samples, "passgate_interrupted_total", route_family="chat") == 1
    small = "mistral-small-latest"
    assert (
        value(samples, "passgate_tokens_total", provider="mistral", model=small, direction="input")
        == 20
    )
    assert (
        value(samples, "passgate_tokens_total", provider="mistral", model=small, direction="output")
        == 40
    )
    assert (
        value(samples, "passgate_tokens_total", provider="mistral", model=small, direction="cached")
        == 8
    )
    assert (
        value(
            samples, "passgate_cost_usd_total", provider="mistral", model=small, key_alias="team-a"
        )
        == 0.75
    )
    assert (
        value(samples, "passgate_unpriced_model_total", provider="mistral", model="my-own-model")
        == 1
    )
    assert value(samples, "passgate_bytes_total", route_family="chat", direction="in") == 100
    assert value(samples, "passgate_bytes_total", route_family="chat", direction="out") == 300
    # chat: four calls of 0.25, 1.5, 0.25, 0.25 s.
    duration = "passgate_request_duration_seconds"
    assert value(samples, duration + "_count", route_family="chat") == 4
    assert value(samples, duration + "_sum", route_family="chat") == pytest.approx(2.25)
    assert value(samples, duration + "_bucket", route_family="chat", le="0.25") == 3
    assert value(samples, duration + "_bucket", route_family="chat", le="1.0") == 3
    assert value(samples, duration + "_bucket", route_family="chat", le="2.5") == 4
    overhead = "passgate_gateway_overhead_seconds"
    assert value(samples, overhead + "_sum", route_family="chat") == pytest.approx(0.65)
    # No first byte from the upstream: nothing to observe.
    assert value(samples, overhead + "_count", route_family="files") is None
    assert value(samples, duration + "_count", route_family="files") == 1


async def test_model_and_alias_labels_are_capped() -> None:
    metrics = Metrics(max_label_values=3, process_metrics=False)
    for index in range(6):
        await metrics.finished(make_exchange(model=f"model-{index}", alias=f"alias-{index}"))
    _, samples = await scrape(metrics)
    models = {
        dict(labels)["model"] for (name, labels) in samples if name == "passgate_requests_total"
    }
    aliases = {
        dict(labels)["key_alias"] for (name, labels) in samples if name == "passgate_requests_total"
    }
    assert models == {"model-0", "model-1", "model-2", "other"}
    assert aliases == {"alias-0", "alias-1", "alias-2", "other"}
    labels = {
        "provider": "mistral",
        "route_family": "chat",
        "model": "other",
        "key_alias": "other",
        "status_class": "2xx",
    }
    assert value(samples, "passgate_requests_total", **labels) == 3


async def test_calls_past_the_remembered_kinds_are_still_counted_right() -> None:
    # Label tuples are remembered per kind of call (path, model, alias, status) up to a
    # bound: paths come from clients, so a flood of distinct ones must neither grow the
    # memo nor be miscounted once it is full.
    metrics = Metrics(max_label_values=3, process_metrics=False)
    kinds = SHAPES_MAX + 50
    for index in range(kinds):
        await metrics.finished(make_exchange(f"/v1/files/f-{index}", status=200 + index % 2))
    for status in (200, 404, 200):
        await metrics.finished(make_exchange(status=status, bytes_in=5))
    assert len(metrics._keys) == SHAPES_MAX
    _, samples = await scrape(metrics)
    files = {
        "provider": "mistral",
        "route_family": "files",
        "model": "mistral-small-latest",
        "key_alias": "team-a",
    }
    assert value(samples, "passgate_requests_total", **files, status_class="2xx") == kinds
    chat = {**files, "route_family": "chat"}
    assert value(samples, "passgate_requests_total", **chat, status_class="2xx") == 2
    assert value(samples, "passgate_requests_total", **chat, status_class="4xx") == 1
    assert value(samples, "passgate_errors_total", route_family="chat", status_class="4xx") == 1
    assert value(samples, "passgate_bytes_total", route_family="chat", direction="in") == 15


def test_capped_label_truncates_and_names_missing_values() -> None:
    cap = CappedLabel(2)
    assert cap(None) == "none"
    assert cap("") == "none"
    assert cap("x" * 500) == "x" * 64
    assert cap("b") == "b"
    assert cap("c") == "other"
    assert cap("b") == "b"


@pytest.mark.parametrize(
    ("status", "klass"), [(200, "2xx"), (204, "2xx"), (301, "3xx"), (429, "4xx"), (0, "none")]
)
def test_status_class(status: int, klass: str) -> None:
    assert status_class(status) == klass


async def test_two_apps_have_separate_registries() -> None:
    first, second = Metrics(), Metrics()
    await first.finished(make_exchange())
    _, samples_first = await scrape(first)
    _, samples_second = await scrape(second)
    labels = {
        "provider": "mistral",
        "route_family": "chat",
        "model": "mistral-small-latest",
        "key_alias": "team-a",
        "status_class": "2xx",
    }
    assert value(samples_first, "passgate_requests_total", **labels) == 1
    assert value(samples_second, "passgate_requests_total", **labels) is None


async def test_redis_bypass_counter_and_queue_gauge() -> None:
    metrics = Metrics(process_metrics=False)
    depth = [7.0]
    metrics.watch_queue("spend", lambda: depth[0])
    metrics.count_redis_bypass()
    metrics.count_redis_bypass()
    _, samples = await scrape(metrics)
    assert value(samples, "passgate_redis_bypass_total") == 2
    assert value(samples, "passgate_queue_depth", queue="spend") == 7
    depth[0] = 3.0
    _, samples = await scrape(metrics)
    assert value(samples, "passgate_queue_depth", queue="spend") == 3


async def test_process_metrics_are_in_the_app_registry() -> None:
    _, samples = await scrape(Metrics())
    assert any(name.startswith("process_") for name, _ in samples)


def _histogram_samples(
    registry: CollectorRegistry,
) -> list[tuple[str, list[tuple[str, str]], float]]:
    text = generate_latest(registry).decode()
    return sorted(
        (sample.name, sorted(sample.labels.items()), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    )


@pytest.mark.parametrize("buckets", [LATENCY_BUCKETS, OVERHEAD_BUCKETS])
def test_histogram_table_exports_what_prometheus_clients_histogram_does(
    buckets: tuple[float, ...],
) -> None:
    # on a bound, between bounds, below the first, above the last, zero
    values = [*buckets, *(b * 0.999 for b in buckets), buckets[0] / 10, buckets[-1] * 2, 0.0]
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "h", "doc", ("route_family",), buckets=buckets, registry=reference_registry
    )
    ours = HistogramTable("h", "doc", ("route_family",), buckets)
    store = SeriesFile(slots=1024, index_bytes=4096)
    ours.bind(store)
    for index, value in enumerate(values):
        family = ("chat", "ocr")[index % 2]
        reference.labels(family).observe(value)
        ours.observe((family,), value)
    registry = CollectorRegistry()
    registry.register(SummedTables((ours,), SeriesDirectory(None, store)))
    assert _histogram_samples(registry) == _histogram_samples(reference_registry)
