"""The Observability bundle: what the app factory wires, built from settings."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route

from passgate.observability.logs import RequestLogger
from passgate.observability.metrics import Metrics
from passgate.observability.stack import Observability
from passgate.observability.tracing import Tracing
from passgate.settings_env import load_settings
from tests.support.exchanges import exchange


def test_defaults_have_metrics_and_access_log_only() -> None:
    obs = Observability(load_settings(otlp_endpoint=None, webhook_url=None))
    assert [type(o) for o in obs.observers] == [Metrics, RequestLogger]
    assert obs.tracing is None
    assert obs.webhook is None
    (route,) = obs.routes
    assert isinstance(route, Route)
    assert route.path == "/metrics"
    assert route.methods is not None and "GET" in route.methods


async def test_every_feature_on() -> None:
    exporter = InMemorySpanExporter()
    settings = load_settings(webhook_url="http://127.0.0.1:9/hook", webhook_batch_size=7)
    obs = Observability(settings, tracing=Tracing(exporter))
    assert [type(o) for o in obs.observers] == [Metrics, RequestLogger, Tracing]
    assert obs.webhook is not None
    assert obs.webhook.batch_size == 7
    await obs.start()
    ex = exchange("/mistral/v1/models", request_id="r", method="GET", start=1.0)
    ex.status, ex.end = 200, 1.01
    for observer in obs.observers:
        await observer.finished(ex)
    obs.webhook.submit([{"request_id": "r"}])
    exposition = obs.metrics.exposition().decode()
    depth = {
        sample.labels.get("queue"): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "passgate_queue_depth"
    }
    assert depth == {"webhook": 1.0}
    obs.webhook.stop_timeout = 0.2  # nothing listens on port 9: stop must not hang
    await obs.stop()
    assert [span.name for span in exporter.get_finished_spans()] == ["GET models"]
