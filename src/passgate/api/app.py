"""The app factory: builds one gateway from settings, with no process-wide state."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from passgate.accounting.meter import Meter
from passgate.accounting.pricing import load_catalog
from passgate.api.gateway import Component, Gateway
from passgate.api.health import health_routes
from passgate.auth.master import MasterKey, MasterKeyAuthenticator
from passgate.config import Settings
from passgate.errors import GatewayError
from passgate.observability.stack import Observability
from passgate.providers.mistral import mistral_provider
from passgate.proxy.body import BodyPolicy
from passgate.proxy.hooks import Pipeline
from passgate.proxy.relay import Relay
from passgate.proxy.upstream import Upstream


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


def build_app(settings: Settings) -> Gateway:
    """Wire every part of the gateway described by ``settings``."""
    master = MasterKey(settings.master_key.get_secret_value() if settings.master_key else None)
    upstream = Upstream(settings)
    observability = Observability(settings)
    components: list[Component] = [upstream, observability]
    meter = Meter(load_catalog(settings.pricing))
    pipeline = Pipeline(
        authenticator=MasterKeyAuthenticator(master),
        metering=meter if settings.accounting else None,
        observers=observability.observers,
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

    async def gateway_ready() -> dict[str, str]:
        return {"status": "healthy"}

    admin = Starlette(
        routes=[*health_routes({"gateway": gateway_ready}), *observability.routes],
        exception_handlers={HTTPException: _http_error, GatewayError: _gateway_error},
    )
    return Gateway({b"/mistral": relay}, admin, components)
