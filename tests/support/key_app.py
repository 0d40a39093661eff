"""A small gateway for key tests: the /key routes plus a stand-in pass-through route.

The stand-in ``/mistral/...`` route makes the calls the relay makes before it would
contact the upstream (authenticate, read the model, run the key guard) and answers
200 with parts of the principal, so key enforcement is testable without an upstream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from passgate.api.admin_auth import AdminContext, bearer_token
from passgate.api.boundary import admin_app
from passgate.api.keys import key_routes
from passgate.api.responses import json_response
from passgate.auth.authenticator import KeyAuthenticator
from passgate.auth.cache import KeyCache
from passgate.auth.guards import KeyAccessGuard
from passgate.auth.key_state import KeyStateLoader
from passgate.auth.master import MasterKey
from passgate.config import Settings
from passgate.exchange import Exchange, RequestInfo
from passgate.storage.database import Database
from passgate.storage.migrate import upgrade


def key_app(url: str, master_key: str | None, cache_ttl: float = 5.0) -> Starlette:
    """The app; its database is migrated and closed by the app's lifespan (server's loop)."""
    secret = SecretStr(master_key) if master_key else None
    settings = Settings(master_key=secret, key_cache_ttl=cache_ttl, database_url=url)
    database = Database(settings)
    sessions = database.sessions
    cache = KeyCache(KeyStateLoader(sessions), ttl=cache_ttl)
    authenticator = KeyAuthenticator(MasterKey(master_key), cache)
    ctx = AdminContext(sessions, cache, authenticator, settings)
    guard = KeyAccessGuard()

    async def passthrough(request: Request) -> Response:
        body = await request.body()
        parsed = orjson.loads(body) if body else None
        model = parsed.get("model") if isinstance(parsed, dict) else None
        ex = Exchange(
            request_id="test",
            method=request.method,
            route=request.url.path,
            upstream_path=request.url.path.removeprefix("/mistral"),
            provider="mistral",
            start_time=time.time(),
            start=time.perf_counter(),
            info=RequestInfo(model=model if isinstance(model, str) else None),
        )
        ex.principal = await authenticator.authenticate(bearer_token(request), ex)
        await guard.admit(ex)
        principal = ex.principal
        return json_response(
            {
                "kind": principal.kind,
                "key_alias": principal.key_alias,
                "allowed_deployments": list(principal.allowed_deployments),
            }
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await upgrade(database.url)
        await database.start()
        yield
        await database.stop()

    routes = [
        *key_routes(ctx),
        Route("/mistral/{path:path}", passthrough, methods=["GET", "POST"]),
    ]
    return admin_app(routes, lifespan=lifespan)
