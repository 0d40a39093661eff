"""Entry point for server workers: build the app from what the server handed the worker.

``passgate.runtime.server`` names this module's ``worker_app`` to uvicorn when tracing is off,
and ``passgate.runtime.worker_traced``'s when it is on: the module chosen is the whole difference,
so a worker without tracing never imports the OpenTelemetry SDK or its exporter.
"""

from __future__ import annotations

from collections.abc import Callable

from passgate.api.gateway import Gateway
from passgate.app import build_app
from passgate.config import Settings
from passgate.observability.stack import Tracer
from passgate.runtime.handover import WorkerApp
from passgate.runtime.process import collect_seldom, setup_process_logging

TracerFactory = Callable[[Settings], Tracer | None]


def no_tracing(settings: Settings) -> None:
    """The tracer factory of workers without tracing: none."""
    return None


def handed_app(handed: WorkerApp, tracer: TracerFactory = no_tracing) -> Gateway:
    """The gateway for this worker process, from what the server handed it."""
    settings = handed.settings
    setup_process_logging(settings)
    return build_app(
        settings,
        tracing=tracer(settings),
        spend_socket=handed.spend_socket,
        limits_socket=handed.limits_socket,
        metrics_dir=handed.metrics_dir,
    )


def frozen(app: Gateway) -> Gateway:
    """``app``, its start-up heap frozen out of the garbage collector, which runs seldom."""
    collect_seldom()
    return app


def worker_app(handed: WorkerApp) -> Gateway:
    """The app of one server process without tracing."""
    return frozen(handed_app(handed))
