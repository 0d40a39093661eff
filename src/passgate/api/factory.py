"""Entry point for server workers: build the app from the environment (and ``--config``).

``passgate.server`` names this module's ``worker_app`` to uvicorn when tracing is off,
and ``passgate.api.traced``'s when it is on: the module chosen is the whole difference,
so a worker without tracing never imports the OpenTelemetry SDK or its exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from passgate.api.app import build_app
from passgate.api.gateway import Gateway
from passgate.config import Settings, config_file_from_env, load_settings, spend_socket_from_env
from passgate.observability.stack import Tracer
from passgate.process import collect_seldom, setup_process_logging

log = logging.getLogger(__name__)

TracerFactory = Callable[[Settings], Tracer | None]


def no_tracing(settings: Settings) -> None:
    """The tracer factory of workers without tracing: none."""
    if settings.otlp_endpoint is not None:
        # The server picked this factory from settings without an endpoint; the config
        # file has changed since, and a newly spawned worker read the new one.
        log.warning("otlp_endpoint is set, but tracing starts only with passgate: restart it")
    return None


def app_from_env(tracer: TracerFactory = no_tracing) -> Gateway:
    """The gateway for this worker process, from env vars and the config file."""
    settings = load_settings(config_file_from_env())
    setup_process_logging(settings)
    return build_app(settings, tracing=tracer(settings), spend_socket=spend_socket_from_env())


def frozen(app: Gateway) -> Gateway:
    """``app``, its start-up heap frozen out of the garbage collector, which runs seldom."""
    collect_seldom()
    return app


def worker_app() -> Gateway:
    """The app of one server process without tracing."""
    return frozen(app_from_env())
