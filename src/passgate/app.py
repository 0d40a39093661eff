"""The app factory: builds one gateway from settings, with no process-wide state."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute

from passgate.accounting.meter import Meter
from passgate.accounting.pricing import load_catalogs
from passgate.accounting.retention import Retention
from passgate.accounting.spend_link import SpendForwarder
from passgate.accounting.writer import SpendWriter
from passgate.api.admin_auth import AdminContext
from passgate.api.boundary import admin_app
from passgate.api.deployments import deployment_routes
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
from passgate.limits.runtime import build_limits
from passgate.observability.stack import Observability, Tracer
from passgate.pooling.resource_homes import StoredResourceHomes
from passgate.providers.base import Provider
from passgate.providers.registry import enabled
from passgate.proxy.body import BodyPolicy
from passgate.proxy.deployments import Deployment, DeploymentPool
from passgate.proxy.failover import FailoverPolicy
from passgate.proxy.hooks import Pipeline
from passgate.proxy.relay import Relay
from passgate.proxy.routing import DeploymentRouter
from passgate.proxy.server_limits import STATE_KEY, ServerLimits
from passgate.proxy.upstream import Upstream, UpstreamOptions
from passgate.storage.database import Database
from passgate.ui.app import ui_mount


class _WriterComponent:
    """The spend writer's life: its flush task starts with the app and drains at shutdown."""

    def __init__(self, writer: SpendWriter) -> None:
        self._writer = writer

    async def start(self) -> None:
        self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()


def deployment_pool(settings: Settings, provider: Provider) -> DeploymentPool:
    """The pool of ``provider``'s deployments as ``settings`` declare them (one named
    ``default``, made of the provider's own base URL and key, when they declare none)."""
    spec = provider.spec
    return DeploymentPool(
        spec.name,
        [
            Deployment(
                name=entry.name,
                provider=Provider.of(spec, entry.api_base, entry.api_key),
                weight=entry.weight,
                models=entry.models,
                primary=entry.primary,
            )
            for entry in settings.deployments(spec.name)
        ],
    )


def build_app(
    settings: Settings,
    *,
    tracing: Tracer | None = None,
    spend_socket: str | None = None,
    limits_socket: str | None = None,
    metrics_dir: Path | None = None,
) -> Gateway:
    """Wire every part of the gateway described by ``settings``, with ``tracing`` if given.

    With ``spend_socket`` (a server worker) each call's record goes to the instance's
    spend-writer process, which stores the spend row, feeds the webhook and writes the
    access line; without it (tests, embedding) this app does all three itself. With
    ``limits_socket`` (a worker of a server with several workers and no Redis) rate limits
    and budgets are held by the instance's limits process. With
    ``metrics_dir`` (a server worker) its metrics are summed with the other workers' there.

    The database must be at the newest schema already (``passgate`` migrates it before
    starting workers). Components start in list order and stop in reverse: the database
    first up and last down; the spend writer stops before the observability stack it feeds.
    """
    master = MasterKey(settings.master_key.get_secret_value() if settings.master_key else None)
    database = Database(settings)
    upstream = Upstream(UpstreamOptions.from_settings(settings))
    forwarder = (
        SpendForwarder(spend_socket, queue_max=settings.spend_queue_max)
        if spend_socket and settings.accounting
        else None
    )
    # With a forwarder, the spend-writer process writes the access lines and feeds the webhook.
    observability = Observability(
        settings,
        tracing=tracing,
        webhook=forwarder is None,
        access_log=forwarder is None,
        metrics_dir=metrics_dir,
    )
    specs = settings.provider_specs()
    catalogs = load_catalogs(settings.all_pricing(), specs, settings.deployment_pricing())
    cache = KeyCache(KeyStateLoader(database.sessions), ttl=settings.key_cache_ttl)
    authenticator = KeyAuthenticator(master, cache)
    limits = build_limits(
        settings,
        database.sessions,
        catalogs,
        on_key_invalidated=cache.invalidate,
        on_resync=cache.expire_all,
        on_bypass=lambda _reason: observability.metrics.count_redis_bypass(),
        prefix=settings.redis_prefix,
        limits_socket=limits_socket,
    )
    # each feature once, in the order its hooks run (hooks.Pipeline.of)
    features: list[object] = [KeyAccessGuard(), limits.guard]
    spend: Component | None = None
    retention: Retention | None = None
    if forwarder is not None:
        features.append(forwarder)
        spend = forwarder
        observability.metrics.watch_queue("spend", lambda: float(forwarder.pending))
    elif settings.accounting:
        writer = SpendWriter.from_settings(database.engine, settings)
        if observability.webhook is not None:
            writer.add_listener(observability.webhook.submit)
        observability.metrics.watch_queue("spend", lambda: float(writer.pending))
        features.append(writer)
        spend = _WriterComponent(writer)
        # with a forwarder, the spend-writer process runs the retention
        retention = Retention.from_settings(database.engine, settings)
    features.extend(observability.observers)
    pipeline = Pipeline.of(
        authenticator,
        features,
        metering=Meter(catalogs, specs) if settings.accounting else None,
    )
    policy = BodyPolicy(settings.max_body_bytes, settings.inspect_body_bytes)
    providers = enabled(settings.upstreams(), specs)
    pools = [deployment_pool(settings, provider) for provider in providers]
    for pool in pools:
        pool.listeners.append(observability.metrics.count_set_aside_of)
    homes = StoredResourceHomes(database.sessions)
    failover = FailoverPolicy.from_settings(settings)
    relays = {
        provider.spec.prefix: Relay(
            prefix=provider.spec.prefix,
            provider=provider,
            upstream=upstream,
            pipeline=pipeline,
            policy=policy,
            first_byte_timeout=settings.first_byte_timeout,
            idle_timeout=settings.idle_timeout,
            router=DeploymentRouter(provider.spec, pool, homes),
            failover=failover,
        )
        for provider, pool in zip(providers, pools, strict=True)
    }
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
        *deployment_routes(ctx, pools),
        *observability.routes,
    ]
    if settings.ui:
        routes.append(ui_mount(ctx, limits))
    admin = admin_app(routes)
    components: list[Component] = [
        database,
        KeyChangeFeed(database.sessions, cache.expire, settings.key_change_poll_interval),
        upstream,
        observability,
        limits,
    ]
    if settings.redis_url and any(not pool.single for pool in pools):
        # Imported only then, as the limits do: redis.asyncio is large, and a worker without
        # Redis (or with one deployment per provider) would hold it for nothing.
        from passgate.limits.redis_backend import redis_client
        from passgate.pooling.shared_health import SharedHealth

        components.append(
            SharedHealth(
                redis_client(settings.redis_url),
                pools,
                prefix=settings.redis_prefix,
                interval=settings.deployment_sync_interval,
            )
        )
    if spend is not None:
        components.append(spend)
    if retention is not None:
        components.append(retention)
    metrics = observability.metrics
    server_limits = ServerLimits.from_settings(
        settings,
        on_refused=metrics.count_connection_refused,
        on_rejected=metrics.count_request_rejected,
    )
    return Gateway(
        relays,
        admin,
        components,
        max_calls_in_flight=settings.max_calls_in_flight,
        on_overload=metrics.count_overloaded,
        server_state={STATE_KEY: server_limits},
    )
