"""Every observability feature of one gateway, built from its settings.

The app factory builds one ``Observability``, puts ``observers`` into the
relay's ``Pipeline``, mounts ``routes``, hands ``webhook`` to the spend writer
(when set) and awaits ``start()`` / ``stop()`` in its lifespan.

Tracing is handed in, built by the caller (``observability.tracing.Tracing``): this
module does not import it, so a worker without tracing never loads the OpenTelemetry
SDK and exporter (see ``passgate.runtime.worker_traced``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from starlette.routing import BaseRoute

from passgate.config import Settings
from passgate.observability.logs import RequestLogger
from passgate.observability.metrics import Metrics
from passgate.observability.webhook import WebhookExporter
from passgate.proxy.hooks import Observer


class Tracer(Observer, Protocol):
    """Tracing as the stack uses it: an observer, stopped (and flushed) at shutdown."""

    async def stop(self) -> None: ...


class Observability:
    """Access log, metrics, tracing and webhook of one gateway."""

    def __init__(
        self,
        settings: Settings,
        *,
        tracing: Tracer | None = None,
        webhook: bool = True,
        access_log: bool = True,
        metrics_dir: Path | None = None,
    ) -> None:
        """``webhook=False`` / ``access_log=False``: another process delivers this gateway's
        spend rows to the webhook / writes its access lines. ``metrics_dir``: where every
        process of the instance keeps its metric series (the server's workers)."""
        self.metrics = Metrics(directory=metrics_dir)
        self.request_logger = RequestLogger() if settings.log_requests and access_log else None
        self.tracing = tracing
        self.webhook = WebhookExporter.from_settings(settings) if webhook else None
        if self.webhook is not None:
            self.metrics.watch_queue("webhook", self._webhook_pending)

    def _webhook_pending(self) -> float:
        return 0.0 if self.webhook is None else float(self.webhook.pending)

    @property
    def observers(self) -> tuple[Observer, ...]:
        """The observers for ``Pipeline.observers``, cheapest first."""
        found: list[Observer] = [self.metrics]
        if self.request_logger is not None:
            found.append(self.request_logger)
        if self.tracing is not None:
            found.append(self.tracing)
        return tuple(found)

    @property
    def routes(self) -> list[BaseRoute]:
        """Starlette routes to mount (``GET /metrics``)."""
        return self.metrics.routes

    async def start(self) -> None:
        """Start background delivery (the webhook); call in the app's startup."""
        await self.metrics.start()
        if self.webhook is not None:
            await self.webhook.start()

    async def stop(self) -> None:
        """Flush and stop; call after the spend writer has stopped (it feeds the webhook)."""
        if self.webhook is not None:
            await self.webhook.stop()
        if self.tracing is not None:
            await self.tracing.stop()
        await self.metrics.stop()
