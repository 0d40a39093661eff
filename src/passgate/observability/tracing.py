"""OpenTelemetry: one span per pass-through call, after the GenAI semantic conventions.

Each ``Tracing`` has its own ``TracerProvider`` (the global one is never touched),
exporting through a ``BatchSpanProcessor``: the relay's observer call only records
the span; export runs on the processor's thread. The span is written once the call
has ended, with explicit start and end times taken from the Exchange.

Spans never carry prompt or response content: the relay streams bodies without
keeping them, so there is none to export.
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from passgate.config import Settings
from passgate.exchange import Exchange
from passgate.observability.families import operation_name, route_family
from passgate.providers.registry import BUILTIN

# each provider's gen_ai.system (its own declaration)
_SYSTEMS = MappingProxyType({spec.name: spec.gen_ai_system for spec in BUILTIN})
TRACES_PATH = "/v1/traces"


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector base URL (``/v1/traces`` appended if absent)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def span_attributes(ex: Exchange) -> dict[str, Any]:
    """The span's attributes: GenAI conventions, HTTP, and ``passgate.*``; no secret, no body."""
    attrs: dict[str, Any] = {
        "http.request.method": ex.method,
        "url.path": ex.route,
        "passgate.upstream_path": ex.upstream_path,
        "passgate.request_id": ex.request_id,
        "passgate.route_family": route_family(ex.upstream_path),
        "passgate.stream": ex.stream,
        "passgate.interrupted": ex.interrupted,
        "passgate.bytes_in": ex.bytes_in,
        "passgate.bytes_out": ex.bytes_out,
    }
    if ex.status:
        attrs["http.response.status_code"] = ex.status
    if ex.deployment is not None:
        attrs["passgate.deployment"] = ex.deployment
        attrs["passgate.attempts"] = ex.attempts
    operation = operation_name(ex.method, ex.upstream_path)
    if operation is not None:
        attrs["gen_ai.operation.name"] = operation
        system = _SYSTEMS.get(ex.provider, ex.provider)
        attrs["gen_ai.system"] = system
        attrs["gen_ai.provider.name"] = system  # the newer name of gen_ai.system
    request_model = ex.info.model
    if request_model:
        attrs["gen_ai.request.model"] = request_model
    # Exchange.model is the request's model, else the one the response named: it tells
    # the response's model only when the request named none (or another one).
    if ex.model and ex.model != request_model:
        attrs["gen_ai.response.model"] = ex.model
    if ex.info.max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = ex.info.max_tokens
    usage = ex.usage
    if usage is not None:
        optional = {
            "gen_ai.usage.input_tokens": usage.prompt_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
            "passgate.usage.cached_tokens": usage.cached_tokens,
            "passgate.usage.pages": usage.pages,
            "passgate.usage.annotated_pages": usage.annotated_pages,
            "passgate.usage.audio_seconds": usage.audio_seconds,
            "passgate.usage.characters": usage.characters,
        }
        attrs.update((name, value) for name, value in optional.items() if value is not None)
    if ex.cost is not None:
        attrs["passgate.cost_usd"] = ex.cost
    if ex.end_user:
        attrs["passgate.end_user"] = ex.end_user
    principal = ex.principal
    if principal is not None and principal.key_alias:
        attrs["passgate.key_alias"] = principal.key_alias
    if ex.upstream_request_id:
        attrs["passgate.upstream_request_id"] = ex.upstream_request_id
    if ex.status >= 500 or (ex.status == 0 and ex.error is not None):
        attrs["error.type"] = str(ex.status) if ex.status else "no_response"
    return attrs


def span_name(ex: Exchange) -> str:
    """``{operation} {model}`` for model calls, else ``{METHOD} {route family}``."""
    operation = operation_name(ex.method, ex.upstream_path)
    if operation is None:
        return f"{ex.method} {route_family(ex.upstream_path)}"
    model = ex.info.model or ex.model
    return f"{operation} {model}" if model else operation


class Tracing:
    """Observer: records one span per call and exports it in batches."""

    def __init__(self, exporter: SpanExporter, *, service_name: str = "passgate") -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            shutdown_on_exit=False,  # stop() shuts it down; atexit would pin every provider
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self.provider.get_tracer("passgate")

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracing | None:
        """OTLP/HTTP export to ``settings.otlp_endpoint``; None when it is not set."""
        if settings.otlp_endpoint is None:
            return None
        return cls(OTLPSpanExporter(endpoint=otlp_traces_url(settings.otlp_endpoint)))

    async def finished(self, ex: Exchange) -> None:
        """Record the call's span (export happens on the processor's thread)."""
        start_ns = int(ex.start_time * 1e9)
        end_ns = start_ns + int((ex.end - ex.start) * 1e9) if ex.end is not None else None
        span = self._tracer.start_span(
            span_name(ex),
            kind=SpanKind.CLIENT,
            attributes=span_attributes(ex),
            start_time=start_ns,
        )
        if ex.first_byte is not None:
            span.add_event(
                "passgate.upstream.first_byte",
                timestamp=start_ns + int((ex.first_byte - ex.start) * 1e9),
            )
        if ex.status >= 500 or (ex.status == 0 and ex.error is not None):
            span.set_status(Status(StatusCode.ERROR, ex.error))
        span.end(end_time=end_ns)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span now (blocking; for tests and shutdown)."""
        return self.provider.force_flush(timeout_millis)

    async def stop(self) -> None:
        """Export what is pending and stop the processor, off the event loop."""
        await asyncio.to_thread(self.provider.shutdown)
