"""What every UI page needs: who is logged in, the CSRF check, and rendering.

Authorization is the admin API's: a master-key session is an admin principal, a
virtual-key session runs as that key's principal (``principal_from_key``) and every
query it makes is limited to that key on the server, never only in the page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse

from passgate.api.key_service import KeyService
from passgate.auth.key_state import principal_from_key
from passgate.config import Settings
from passgate.limits.backend import ScopeKind
from passgate.limits.runtime import Limits
from passgate.principal import MASTER, Principal
from passgate.storage.models import Key, utcnow
from passgate.ui import filters
from passgate.ui.queries import key_by_id
from passgate.ui.session import COOKIE, LoginThrottle, Session, SessionCodec, same_token

OnBudgetChange = Callable[[ScopeKind, str], Awaitable[None]]
MAX_FORM_BYTES = 256 * 1024


class LoginNeeded(Exception):
    """No valid session: the browser goes to the login page."""


class PageError(Exception):
    """A page that cannot be shown or an action refused, said in words for a person."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def admin_only() -> PageError:
    """The page or action needs the master key."""
    return PageError(
        403,
        "Not allowed",
        "This page needs the master key. You are logged in with a virtual key, "
        "which can only see its own usage.",
    )


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in user of one request."""

    principal: Principal
    session: Session
    key: Key | None = None  # the key of a virtual-key session

    @property
    def is_admin(self) -> bool:
        """Logged in with the master key."""
        return self.principal.is_admin


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("passgate.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters.install(env)
    return env


class UiContext:
    """One gateway's UI: its database, services, session codec and templates."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keys: KeyService,
        settings: Settings,
        *,
        on_budget_change: OnBudgetChange | None = None,
        limits: Limits | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        master = settings.master_key
        self.sessions = sessions
        self.keys = keys
        self.settings = settings
        self.on_budget_change = on_budget_change
        self.limits = limits
        self.clock = clock
        self.codec = (
            SessionCodec(master.get_secret_value(), settings.ui_session_ttl) if master else None
        )
        self.throttle = LoginThrottle(settings.ui_login_attempts)
        self.env = _environment()

    def render(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None,
        status: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        """A page from ``template`` (every value HTML-escaped by the environment)."""
        page = self.env.get_template(template).render(
            request=request, viewer=viewer, root=request.scope.get("root_path", ""), **values
        )
        return HTMLResponse(page, status_code=status)

    async def viewer(self, request: Request) -> Viewer | None:
        """The logged-in user, or None (no cookie, a forged or expired one, a key since
        regenerated or deleted). A blocked or expired key keeps its read-only view."""
        if self.codec is None:
            return None
        session = self.codec.read(request.cookies.get(COOKIE))
        if session is None:
            return None
        if session.kind == "master":
            return Viewer(MASTER, session)
        async with self.sessions() as db:
            row = await key_by_id(db, session.key_id)
        if row is None:
            return None
        return Viewer(principal_from_key(row), session, row)

    async def require(self, request: Request, *, admin: bool = False) -> Viewer:
        """The logged-in user (``LoginNeeded`` otherwise); with ``admin``, the master key."""
        viewer = await self.viewer(request)
        if viewer is None:
            raise LoginNeeded
        if admin and not viewer.is_admin:
            raise admin_only()
        return viewer

    async def form(self, request: Request, viewer: Viewer) -> FormData:
        """The posted form, after its CSRF token is checked against the session's."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise PageError(413, "Form too large", "The form sent is too large.")
        form = await request.form(max_files=0)
        token = form.get("csrf")
        if not same_token(token if isinstance(token, str) else None, viewer.session.csrf):
            raise PageError(
                403,
                "Form expired",
                "This form is out of date or came from another site. "
                "Reload the page and try again.",
            )
        return form
