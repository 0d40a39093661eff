"""OpenTelemetry: one span per call with the GenAI attributes, exact times, OTLP export."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from passgate.exchange import Exchange, RequestInfo, Usage
from passgate.observability.tracing import Tracing, otlp_traces_url
from passgate.principal import Principal
from passgate.settings_env import load_settings

START_TIME = 1_700_000_000.25


def make_exchange(
    path: str = "/v1/chat/completions",
    *,
    method: str = "POST",
    status: int = 200,
    request_model: str | None = "mistral-small-latest",
    model: str | None = "mistral-small-latest",
    usage: Usage | None = None,
    cost: float | None = None,
    error: str | None = None,
    ttfb: float | None = 0.125,
    latency: float = 0.5,
) -> Exchange:
    ex = Exchange(
        request_id="req-42",
        method=method,
        route="/mistral" + path,
        upstream_path=path,
        provider="mistral",
        start_time=START_TIME,
        start=500.0,
    )
    ex.principal = Principal(kind="virtual", token="f" * 64, key_alias="team-a")
    ex.info = RequestInfo(model=request_model, stream=True, max_tokens=64)
    ex.model, ex.status, ex.usage, ex.cost, ex.error = model, status, usage, cost, error
    ex.stream, ex.end_user = True, "alice"
    ex.first_byte = None if ttfb is None else ex.start + ttfb
    ex.end = ex.start + latency
    return ex


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def tracing(exporter: InMemorySpanExporter) -> AsyncIterator[Tracing]:
    tracing = Tracing(exporter)
    yield tracing
    await tracing.stop()


async def finished_spans(
    tracing: Tracing, exporter: InMemorySpanExporter, *exchanges: Exchange
) -> tuple[ReadableSpan, ...]:
    for ex in exchanges:
        await tracing.finished(ex)
    assert tracing.force_flush()
    return exporter.get_finished_spans()


async def test_chat_span_follows_genai_conventions(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    usage = Usage(prompt_tokens=11, completion_tokens=22, cached_tokens=3)
    (span,) = await finished_spans(tracing, exporter, make_exchange(usage=usage, cost=0.0042))
    assert span.name == "chat mistral-small-latest"
    assert span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.system"] == "mistral_ai"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "mistral-small-latest"
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.usage.input_tokens"] == 11
    assert attrs["gen_ai.usage.output_tokens"] == 22
    assert attrs["passgate.usage.cached_tokens"] == 3
    assert attrs["http.request.method"] == "POST"
    assert attrs["http.response.status_code"] == 200
    assert attrs["url.path"] == "/mistral/v1/chat/completions"
    assert attrs["passgate.cost_usd"] == 0.0042
    assert attrs["passgate.end_user"] == "alice"
    assert attrs["passgate.key_alias"] == "team-a"
    assert attrs["passgate.request_id"] == "req-42"
    assert "f" * 64 not in str(attrs)  # the key hash never leaves the gateway
    assert span.status.status_code is StatusCode.UNSET
    assert span.start_time == int(START_TIME * 1e9)
    assert span.end_time == span.start_time + 500_000_000
    (first_byte,) = span.events
    assert first_byte.name == "passgate.upstream.first_byte"
    assert first_byte.timestamp == span.start_time + 125_000_000
    assert span.resource.attributes["service.name"] == "passgate"


async def test_response_model_is_set_when_the_response_named_it(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    ex = make_exchange("/v1/agents/completions", request_model=None, model="mistral-large-2411")
    (span,) = await finished_spans(tracing, exporter, ex)
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["gen_ai.response.model"] == "mistral-large-2411"
    assert "gen_ai.request.model" not in attrs
    assert span.name == "invoke_agent mistral-large-2411"


async def test_one_span_per_call_and_errors_from_500(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    spans = await finished_spans(
        tracing,
        exporter,
        make_exchange(),
        make_exchange("/v1/embeddings", status=502, error="cannot reach the upstream"),
        make_exchange("/v1/chat/completions", status=404),
        make_exchange("/v1/files", method="GET", status=0, ttfb=None, error="client gone"),
    )
    assert len(spans) == 4
    ok, bad_gateway, not_found, no_response = spans
    assert ok.status.status_code is StatusCode.UNSET
    assert bad_gateway.status.status_code is StatusCode.ERROR
    assert bad_gateway.status.description == "cannot reach the upstream"
    assert (bad_gateway.attributes or {})["error.type"] == "502"
    assert bad_gateway.name == "embeddings mistral-small-latest"
    assert not_found.status.status_code is StatusCode.UNSET
    assert no_response.status.status_code is StatusCode.ERROR
    assert no_response.name == "GET files"
    no_response_attrs = dict(no_response.attributes or {})
    assert "gen_ai.operation.name" not in no_response_attrs
    assert "http.response.status_code" not in no_response_attrs
    assert no_response.events == ()


async def test_the_global_tracer_provider_is_untouched(exporter: InMemorySpanExporter) -> None:
    before = trace.get_tracer_provider()
    first, second = Tracing(exporter), Tracing(InMemorySpanExporter())
    await first.finished(make_exchange())
    await first.stop()
    await second.stop()
    assert trace.get_tracer_provider() is before
    assert len(exporter.get_finished_spans()) == 1


def test_otlp_traces_url() -> None:
    assert otlp_traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert otlp_traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert otlp_traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_no_tracing_without_an_endpoint() -> None:
    assert Tracing.from_settings(load_settings(otlp_endpoint=None)) is None


async def test_spans_reach_an_otlp_http_collector() -> None:
    received: list[ExportTraceServiceRequest] = []

    async def collect(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        settings = load_settings(otlp_endpoint=f"http://127.0.0.1:{port}")
        tracing = Tracing.from_settings(settings)
        assert tracing is not None
        await tracing.finished(make_exchange(usage=Usage(prompt_tokens=5, completion_tokens=6)))
        await tracing.stop()  # flushes the batch over OTLP/HTTP
    finally:
        await runner.cleanup()
    spans = [
        span
        for message in received
        for resource in message.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert len(spans) == 1
    attrs = {a.key: a.value for a in spans[0].attributes}
    assert attrs["gen_ai.system"].string_value == "mistral_ai"
    assert attrs["gen_ai.usage.input_tokens"].int_value == 5
    assert attrs["gen_ai.usage.output_tokens"].int_value == 6
    assert spans[0].start_time_unix_nano == int(START_TIME * 1e9)
