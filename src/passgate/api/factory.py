"""Entry point for server workers: build the app from the settings ``passgate`` handed over.

``passgate.server`` names this module's ``worker_app`` to uvicorn when tracing is off,
and ``passgate.api.traced``'s when it is on: the module chosen is the whole difference,
so a worker without tracing never imports the OpenTelemetry SDK or its exporter.
"""

from __future__ import annotations

from collections.abc import Callable

from passgate.api.app import build_app
from passgate.api.gateway import Gateway
from passgate.config import (
    Settings,
    metrics_dir_from_env,
    spend_socket_from_env,
    worker_settings,
)
from passgate.observability.stack import Tracer
from passgate.process import collect_seldom, setup_process_logging

TracerFactory = Callable[[Settings], Tracer | None]


def no_tracing(settings: Settings) -> None:
    """The tracer factory of workers without tracing: none."""
    return None


def app_from_env(tracer: TracerFactory = no_tracing) -> Gateway:
    """The gateway for this worker process, from the settings ``passgate`` handed over."""
    settings = worker_settings()
    if settings is None:
        raise RuntimeError("a worker's settings come from passgate (PASSGATE_WORKER_SETTINGS)")
    setup_process_logging(settings)
    return build_app(
        settings,
        tracing=tracer(settings),
        spend_socket=spend_socket_from_env(),
        metrics_dir=metrics_dir_from_env(),
    )


def frozen(app: Gateway) -> Gateway:
    """``app``, its start-up heap frozen out of the garbage collector, which runs seldom."""
    collect_seldom()
    return app


def worker_app() -> Gateway:
    """The app of one server process without tracing."""
    return frozen(app_from_env())
