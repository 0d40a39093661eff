"""Entry point for server workers when tracing is configured (``otlp_endpoint`` set).

A module of its own so that only these workers import the OpenTelemetry SDK and the
OTLP exporter, which cost each worker memory; ``passgate.runtime.server.app_factory`` picks it.
"""

from __future__ import annotations

from passgate.api.gateway import Gateway
from passgate.observability.tracing import Tracing
from passgate.runtime.handover import WorkerApp
from passgate.runtime.worker import frozen, handed_app


def worker_app(handed: WorkerApp) -> Gateway:
    """The app of one server process, exporting a span per call over OTLP/HTTP."""
    return frozen(handed_app(handed, Tracing.from_settings))
