"""The app factory: builds one gateway from settings, with no process-wide state."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from passgate.accounting.meter import Meter
from passgate.accounting.pricing import load_catalog
from passgate.accounting.spend_link import SpendForwarder
from passgate.accounting.writer import SpendWriter
from passgate.api.admin_auth import AdminContext
from passgate.api.entities import entity_routes
from passgate.api.gateway import Component, Gateway
from passgate.api.health import health_routes
from passgate.api.keys import key_routes
from passgate.api.spend import spend_routes
from passgate.auth.authenticator import KeyAuthenticator
from passgate.auth.cache import KeyCache
from passgate.auth.guards import KeyAccessGuard
from passgate.auth.key_feed import KeyChangeFeed
from passgate.auth.key_state import KeyStateLoader
from passgate.auth.master import MasterKey
from passgate.config import Settings
from passgate.errors import GatewayError
from passgate.limits.runtime import build_limits
from passgate.observability.stack import Observability, Tracer
from passgate.providers.mistral import mistral_provider
from passgate.proxy.body import BodyPolicy
from passgate.proxy.hooks import Observer, Pipeline
from passgate.proxy.relay import Relay
from passgate.proxy.server_limits import STATE_KEY, ServerLimits
from passgate.proxy.upstream import Upstream
from passgate.storage.database import Database


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found" if exc.status_code == 404 else "http_error"
    err = GatewayError(exc.status_code, str(exc.detail), "invalid_request_error", kind)
    return Response(err.body(), status_code=exc.status_code, media_type="application/json")


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return Response(
        exc.body(),
        status_code=exc.status,
        media_type="application/json",
        headers={k.decode(): v.decode() for k, v in exc.headers},
    )


class _WriterComponent:
    """The spend writer's life: its flush task starts with the app and drains at shutdown."""

    def __init__(self, writer: SpendWriter) -> None:
        self._writer = writer

    async def start(self) -> None:
        self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()


def build_app(
    settings: Settings, *, tracing: Tracer | None = None, spend_socket: str | None = None
) -> Gateway:
    """Wire every part of the gateway described by ``settings``, with ``tracing`` if given.

    With ``spend_socket`` (a server worker) each call's record goes to the instance's
    spend-writer process, which stores the spend row, feeds the webhook and writes the
    access line; without it (tests, embedding) this app does all three itself.

    The database must be at the newest schema already (``passgate`` migrates it before
    starting workers). Components start in list order and stop in reverse: the database
    first up and last down; the spend writer stops before the observability stack it feeds.
    """
    master = MasterKey(settings.master_key.get_secret_value() if settings.master_key else None)
    database = Database(settings)
    upstream = Upstream(settings)
    forwarder = (
        SpendForwarder(spend_socket, queue_max=settings.spend_queue_max)
        if spend_socket and settings.accounting
        else None
    )
    # With a forwarder, the spend-writer process writes the access lines and feeds the webhook.
    observability = Observability(
        settings, tracing=tracing, webhook=forwarder is None, access_log=forwarder is None
    )
    catalog = load_catalog(settings.pricing)
    cache = KeyCache(KeyStateLoader(database.sessions), ttl=settings.key_cache_ttl)
    authenticator = KeyAuthenticator(master, cache)
    limits = build_limits(
        settings,
        database.sessions,
        catalog,
        on_key_invalidated=cache.invalidate,
        on_resync=cache.expire_all,
        on_bypass=lambda _reason: observability.metrics.count_redis_bypass(),
        prefix=settings.redis_prefix,
    )
    observers: list[Observer] = [limits.guard]
    spend: Component | None = None
    if forwarder is not None:
        observers.append(forwarder)
        spend = forwarder
        observability.metrics.watch_queue("spend", lambda: float(forwarder.pending))
    elif settings.accounting:
        writer = SpendWriter.from_settings(database.engine, settings)
        if observability.webhook is not None:
            writer.add_listener(observability.webhook.submit)
        observability.metrics.watch_queue("spend", lambda: float(writer.pending))
        observers.append(writer)
        spend = _WriterComponent(writer)
    observers.extend(observability.observers)
    pipeline = Pipeline(
        authenticator=authenticator,
        guards=(KeyAccessGuard(), limits.guard),
        metering=Meter(catalog) if settings.accounting else None,
        observers=tuple(observers),
    )
    relay = Relay(
        prefix=b"/mistral",
        provider=mistral_provider(settings),
        upstream=upstream,
        pipeline=pipeline,
        policy=BodyPolicy(settings.max_body_bytes, settings.inspect_body_bytes),
        first_byte_timeout=settings.first_byte_timeout,
        idle_timeout=settings.idle_timeout,
    )
    ctx = AdminContext(
        database.sessions, cache, authenticator, settings, on_key_change=limits.key_changed_soon
    )

    async def database_ready() -> dict[str, str]:
        return await database.health()

    routes: list[BaseRoute] = [
        *health_routes({"database": database_ready}),
        *key_routes(ctx),
        *spend_routes(ctx),
        *entity_routes(ctx, on_change=limits.budget_changed),
        *observability.routes,
    ]
    admin = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, GatewayError: _gateway_error},
    )
    components: list[Component] = [
        database,
        KeyChangeFeed(database.sessions, cache.expire, settings.key_change_poll_interval),
        upstream,
        observability,
        limits,
    ]
    if spend is not None:
        components.append(spend)
    metrics = observability.metrics
    server_limits = ServerLimits.from_settings(
        settings,
        on_refused=metrics.count_connection_refused,
        on_rejected=metrics.count_request_rejected,
    )
    return Gateway(
        {b"/mistral": relay},
        admin,
        components,
        max_calls_in_flight=settings.max_calls_in_flight,
        on_overload=metrics.count_overloaded,
        server_state={STATE_KEY: server_limits},
    )
