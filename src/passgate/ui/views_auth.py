"""Log in (master key or a virtual key), log out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from passgate.auth.keys import hash_key, looks_like_key
from passgate.auth.master import MasterKey
from passgate.listen_tls import serves_tls
from passgate.storage import keys_repo
from passgate.ui.context import UiContext
from passgate.ui.session import COOKIE, LOGIN_COOKIE, key_id

_NO_MASTER = (
    "The web UI needs a master key: set PASSGATE_MASTER_KEY and restart the gateway. "
    "Without one the gateway is open and a login would protect nothing."
)
_WRONG = "That key was not accepted. Check it and try again."


def _secure(request: Request, ui: UiContext) -> bool:
    settings = ui.settings
    return settings.ui_secure_cookies or serves_tls(settings) or request.url.scheme == "https"


class AuthViews:
    """The login form, its submission, and logout."""

    def __init__(self, ui: UiContext, master: MasterKey) -> None:
        self._ui = ui
        self._master = master

    def _form(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        ui = self._ui
        if ui.codec is None:
            return ui.render(
                request, "message.html", None, 503, title="UI disabled", message=_NO_MASTER
            )
        token, cookie = ui.codec.login_token()
        response = ui.render(request, "login.html", None, status, login_token=token, error=error)
        response.set_cookie(
            LOGIN_COOKIE,
            cookie,
            max_age=3600,
            path=request.scope.get("root_path") or "/",
            secure=_secure(request, ui),
            httponly=True,
            samesite="strict",
        )
        return response

    async def login_page(self, request: Request) -> Response:
        """GET /ui/login."""
        if await self._ui.viewer(request) is not None:
            return RedirectResponse(request.url_for("ui:overview"), status_code=303)
        return self._form(request)

    async def login(self, request: Request) -> Response:
        """POST /ui/login: the key is checked as the API checks a bearer token; it is never
        logged, echoed back nor kept (the session names the key by its short id)."""
        ui = self._ui
        if ui.codec is None:
            return self._form(request)
        address = request.client.host if request.client else "unknown"
        if not ui.throttle.allow(address):
            return self._form(
                request, "Too many login attempts from your address. Wait a minute and retry.", 429
            )
        form = await request.form(max_files=0)
        given = form.get("login_token")
        if not ui.codec.login_token_ok(
            request.cookies.get(LOGIN_COOKIE), given if isinstance(given, str) else None
        ):
            return self._form(request, "The login form expired. Please try again.", 403)
        secret = form.get("key")
        secret = secret.strip() if isinstance(secret, str) else ""
        if not secret:
            return self._form(request, "Enter the master key or a virtual key.", 400)
        if self._master.matches(secret):  # constant-time
            _, cookie = ui.codec.new("master")
        else:
            # A blocked or expired key may still log in: its holder sees why calls fail,
            # and the view is read-only. A replaced secret (regenerated) may not.
            token = hash_key(secret) if looks_like_key(secret) else None
            if token is None:
                return self._form(request, _WRONG, 401)
            async with ui.sessions() as db:
                row = await keys_repo.get(db, token)
            if row is None:
                return self._form(request, _WRONG, 401)
            _, cookie = ui.codec.new("virtual", key_id(row.token))
        response = RedirectResponse(request.url_for("ui:overview"), status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(ui.settings.ui_session_ttl),
            path=request.scope.get("root_path") or "/",
            secure=_secure(request, ui),
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(LOGIN_COOKIE, path=request.scope.get("root_path") or "/")
        return response

    async def logout(self, request: Request) -> Response:
        """POST /ui/logout (CSRF-checked): the session cookie is removed."""
        viewer = await self._ui.require(request)
        await self._ui.form(request, viewer)
        response = RedirectResponse(request.url_for("ui:login"), status_code=303)
        response.delete_cookie(
            COOKIE, path=request.scope.get("root_path") or "/", httponly=True, samesite="strict"
        )
        return response


def auth_routes(ui: UiContext, master: MasterKey) -> list[Route]:
    """The login and logout routes."""
    views = AuthViews(ui, master)
    return [
        Route("/login", views.login_page, methods=["GET"], name="ui:login"),
        Route("/login", views.login, methods=["POST"], name="ui:login_post"),
        Route("/logout", views.logout, methods=["POST"], name="ui:logout"),
    ]
