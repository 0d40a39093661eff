"""The UI app, mounted at ``/ui`` by the gateway's app factory."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from passgate.api.admin_auth import AdminContext
from passgate.api.key_service import KeyService
from passgate.auth.master import MasterKey
from passgate.limits.runtime import Limits
from passgate.ui.context import LoginNeeded, PageError, UiContext
from passgate.ui.headers import SecurityHeaders
from passgate.ui.views_auth import auth_routes
from passgate.ui.views_entities import entity_routes
from passgate.ui.views_keys import key_routes
from passgate.ui.views_pages import page_routes

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def build_ui(ui: UiContext, master: MasterKey) -> Starlette:
    """The ``/ui`` app: pages, static files, and one place that turns errors into pages."""

    async def login_needed(request: Request, exc: Exception) -> Response:
        return RedirectResponse(request.url_for("ui:login"), status_code=303)

    async def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        viewer = await ui.viewer(request)
        return ui.render(
            request, "message.html", viewer, exc.status, title=exc.title, message=exc.message
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = "There is no such page." if exc.status_code == 404 else str(exc.detail)
        return ui.render(
            request,
            "message.html",
            None,
            exc.status_code,
            title="Not found" if exc.status_code == 404 else "Error",
            message=message,
        )

    async def database_error(request: Request, exc: Exception) -> Response:
        # the text may carry SQL parameters (key hashes): its type says enough
        log.error("ui page %s failed: %s", request.url.path, type(exc).__name__)
        return ui.render(
            request,
            "message.html",
            None,
            503,
            title="Database unavailable",
            message="The database did not answer. Try again in a moment.",
        )

    routes: list[BaseRoute] = [
        Mount("/static", app=StaticFiles(directory=STATIC), name="ui:static"),
        *auth_routes(ui, master),
        *page_routes(ui),
        *key_routes(ui),
        *entity_routes(ui),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            LoginNeeded: login_needed,
            PageError: page_error,
            HTTPException: http_error,
            SQLAlchemyError: database_error,
            OSError: database_error,
        },
    )


def ui_mount(ctx: AdminContext, limits: Limits | None = None) -> Mount:
    """``/ui``, over the admin API's context: its database sessions, key cache and settings."""
    master = ctx.authenticator.master
    keys = KeyService(
        ctx.sessions,
        ctx.cache,
        master,
        on_change=ctx.on_key_change,
        propagation_delay=2 * ctx.settings.key_change_poll_interval,
    )
    ui = UiContext(
        ctx.sessions,
        keys,
        ctx.settings,
        on_budget_change=limits.budget_changed if limits else None,
        limits=limits,
    )
    return Mount("/ui", app=build_ui(ui, master))
