"""Users, teams and end users: list with spend, create, edit budgets, block end users.

The forms go through the admin API's request models (``UserRequest``, ``TeamRequest``,
``CustomerRequest``); rows are written with ``entities_repo``, and the limits are told
of every budget change, as the API does.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from passgate.api.entities import budget_columns
from passgate.api.entity_schemas import CustomerRequest, TeamRequest, UserRequest
from passgate.limits.backend import ScopeKind
from passgate.storage import entities_repo
from passgate.storage.models import EndUser, Team, User
from passgate.ui import forms
from passgate.ui.context import PageError, UiContext
from passgate.ui.paging import Paging, page_number
from passgate.ui.queries import ENTITIES, entity_page

PAGE_SIZE = 25
_SCOPES: dict[str, ScopeKind] = {"users": "user", "teams": "team", "end-users": "end_user"}
_TITLES = {"users": "Users", "teams": "Teams", "end-users": "End users"}
_ALIAS = {"users": "user_alias", "teams": "team_alias", "end-users": "alias"}
_ID_NAME = {"users": "user_id", "teams": "team_id", "end-users": "user_id"}
_REQUESTS: dict[str, Any] = {
    "users": UserRequest,
    "teams": TeamRequest,
    "end-users": CustomerRequest,
}


def _kind(request: Request) -> str:
    kind = str(request.path_params["kind"])
    if kind not in ENTITIES:
        raise PageError(404, "Not found", "There is no such page.")
    return kind


def entity_id(row: User | Team | EndUser) -> str:
    """The id of a user, team or end user."""
    if isinstance(row, User):
        return row.user_id
    if isinstance(row, Team):
        return row.team_id
    return row.end_user_id


def alias_of(row: User | Team | EndUser) -> str | None:
    """The display name of a user, team or end user, if it has one."""
    if isinstance(row, User):
        return row.user_alias
    if isinstance(row, Team):
        return row.team_alias
    alias = (row.metadata_ or {}).get("alias")
    return alias if isinstance(alias, str) else None


class EntityViews:
    """The pages of the three kinds of budget holder."""

    def __init__(self, ui: UiContext) -> None:
        self._ui = ui

    async def index(
        self, request: Request, error: str | None = None, values: dict[str, str] | None = None
    ) -> Response:
        """GET /ui/{users,teams,end-users}: the list (biggest spend first) and a create form."""
        viewer = await self._ui.require(request, admin=True)
        kind = _kind(request)
        q = request.query_params
        text = (q.get("q") or "").strip()[:256] or None
        page = page_number(q.get("page"))
        async with self._ui.sessions() as db:
            rows, total = await entity_page(db, kind, text, page, PAGE_SIZE)
        return self._ui.render(
            request,
            "entities.html",
            viewer,
            422 if error else 200,
            kind=kind,
            title=_TITLES[kind],
            rows=[(entity_id(row), alias_of(row), row) for row in rows],
            text=text or "",
            paging=Paging(page, PAGE_SIZE, total, len(rows)),
            error=error,
            values=values or {},
        )

    async def create(self, request: Request) -> Response:
        """POST /ui/{kind}: a new user, team or end user."""
        viewer = await self._ui.require(request, admin=True)
        kind = _kind(request)
        form = await self._ui.form(request, viewer)
        try:
            new_id = forms.text(form, "id")
            if new_id is None:
                raise forms.invalid_form("Id: enter an id.")
            fields = self._fields(kind, form, new_id)
            req = forms.validated(_REQUESTS[kind], fields)
            values = self._columns(kind, req, {})
            async with self._ui.sessions.begin() as db:
                if await entities_repo.get(db, ENTITIES[kind], new_id) is not None:
                    raise forms.invalid_form(f"Id: {new_id!r} already exists.")
                await entities_repo.upsert(db, ENTITIES[kind], new_id, values)
        except PageError as exc:
            values = {k: v for k, v in form.items() if isinstance(v, str)}
            return await self.index(request, exc.message, values)
        await self._changed(kind, new_id)
        return RedirectResponse(request.url_for("ui:entities", kind=kind), status_code=303)

    async def edit_page(self, request: Request, error: str | None = None) -> Response:
        """GET /ui/{kind}/{id}/edit."""
        viewer = await self._ui.require(request, admin=True)
        kind = _kind(request)
        row = await self._existing(kind, str(request.path_params["entity_id"]))
        return self._ui.render(
            request,
            "entity_form.html",
            viewer,
            422 if error else 200,
            kind=kind,
            title=_TITLES[kind],
            row=row,
            row_id=entity_id(row),
            alias=alias_of(row),
            error=error,
        )

    async def edit(self, request: Request) -> Response:
        """POST /ui/{kind}/{id}/edit: alias and budget."""
        viewer = await self._ui.require(request, admin=True)
        kind = _kind(request)
        current = await self._existing(kind, str(request.path_params["entity_id"]))
        the_id = entity_id(current)
        form = await self._ui.form(request, viewer)
        try:
            fields = self._fields(kind, form, the_id, editing=True)
            req = forms.validated(_REQUESTS[kind], fields)
            values = self._columns(kind, req, current.metadata_ or {})
            async with self._ui.sessions.begin() as db:
                await entities_repo.update_fields(db, ENTITIES[kind], the_id, values)
        except PageError as exc:
            return await self.edit_page(request, exc.message)
        await self._changed(kind, the_id)
        return RedirectResponse(request.url_for("ui:entities", kind=kind), status_code=303)

    async def block(self, request: Request) -> Response:
        """POST /ui/end-users/{id}/block."""
        return await self._set_blocked(request, True)

    async def unblock(self, request: Request) -> Response:
        """POST /ui/end-users/{id}/unblock."""
        return await self._set_blocked(request, False)

    async def _set_blocked(self, request: Request, blocked: bool) -> Response:
        viewer = await self._ui.require(request, admin=True)
        the_id = str(request.path_params["entity_id"])
        await self._existing("end-users", the_id)
        await self._ui.form(request, viewer)
        async with self._ui.sessions.begin() as db:
            await entities_repo.update_fields(db, EndUser, the_id, {"blocked": blocked})
        await self._changed("end-users", the_id)
        return RedirectResponse(request.url_for("ui:entities", kind="end-users"), status_code=303)

    @staticmethod
    def _fields(kind: str, form: Any, the_id: str, *, editing: bool = False) -> dict[str, Any]:
        fields: dict[str, Any] = {_ID_NAME[kind]: the_id}
        if kind == "users":
            fields["auto_create_key"] = False
        alias = forms.text(form, "alias")
        if alias is not None or editing:
            fields[_ALIAS[kind]] = alias
        budget = forms.decimal(form, "max_budget")
        if budget is not None or editing:
            fields["max_budget"] = budget
        period = forms.text(form, "budget_duration")
        if period is not None or editing:
            fields["budget_duration"] = period
        return fields

    @staticmethod
    def _columns(kind: str, req: Any, metadata: dict[str, Any]) -> dict[str, Any]:
        given = req.model_fields_set
        values = budget_columns(req)
        if kind == "end-users":
            updated = dict(metadata)
            if "alias" in given:
                if req.alias is None:
                    updated.pop("alias", None)
                else:
                    updated["alias"] = req.alias
            values["metadata_"] = updated
        else:
            name = _ALIAS[kind]
            if name in given:
                values[name] = getattr(req, name)
        return values

    async def _existing(self, kind: str, the_id: str) -> User | Team | EndUser:
        async with self._ui.sessions() as db:
            row: User | Team | EndUser | None = await entities_repo.get(db, ENTITIES[kind], the_id)
        if row is None:
            raise PageError(404, "Not found", f"No {_SCOPES[kind].replace('_', ' ')} with this id.")
        return row

    async def _changed(self, kind: str, the_id: str) -> None:
        if self._ui.on_budget_change is not None:
            await self._ui.on_budget_change(_SCOPES[kind], the_id)


def entity_routes(ui: UiContext) -> list[Route]:
    """The user, team and end-user pages' routes."""
    v = EntityViews(ui)
    one = "/{kind:str}/{entity_id:str}"
    return [
        Route("/end-users/{entity_id:str}/block", v.block, methods=["POST"], name="ui:eu_block"),
        Route(
            "/end-users/{entity_id:str}/unblock", v.unblock, methods=["POST"], name="ui:eu_unblock"
        ),
        Route("/{kind:str}", v.index, methods=["GET"], name="ui:entities"),
        Route("/{kind:str}", v.create, methods=["POST"], name="ui:entity_create"),
        Route(one + "/edit", v.edit_page, methods=["GET"], name="ui:entity_edit"),
        Route(one + "/edit", v.edit, methods=["POST"], name="ui:entity_edit_post"),
    ]
