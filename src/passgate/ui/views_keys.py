"""Keys: search and pages, create (the plaintext shown once), detail, edit, block, regenerate,
delete. Every change goes through the admin API's ``KeyService``; all but a key's own detail
page need the master key."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from passgate.accounting.spend_queries import SpendFilter
from passgate.api.key_schemas import (
    DeleteKeysRequest,
    GenerateKeyRequest,
    RegenerateKeyRequest,
    UpdateKeyRequest,
)
from passgate.errors import GatewayError
from passgate.storage.models import Key
from passgate.ui import forms
from passgate.ui.budgets import budget_lines
from passgate.ui.context import PageError, UiContext, Viewer, admin_only
from passgate.ui.paging import Paging, page_number
from passgate.ui.queries import (
    KeySearch,
    Window,
    custom_plans,
    key_by_id,
    log_page,
    search_keys,
    series,
)
from passgate.ui.rates import counted_by, rate_lines
from passgate.ui.session import key_id

PAGE_SIZE = 25
_YES_NO = {"yes": True, "no": False}


def action_failed(exc: GatewayError) -> PageError:
    """An error of the key service, in its own words (they never quote a key)."""
    return PageError(exc.status, "That did not work", exc.message)


def _form_values(form: FormData) -> dict[str, str]:
    return {name: value for name, value in form.items() if isinstance(value, str)}


def key_values(row: Key) -> dict[str, str]:
    """A key's settings as the edit form's initial text."""
    metadata = {k: v for k, v in (row.metadata_ or {}).items() if k != "tags"}
    return {
        "key_alias": row.key_alias or "",
        "user_id": row.user_id or "",
        "team_id": row.team_id or "",
        "end_user_id": row.end_user_id or "",
        "models": ", ".join(row.models or []),
        "allowed_routes": ", ".join(row.allowed_routes or []),
        "allowed_deployments": ", ".join(row.allowed_deployments or []),
        "tags": ", ".join((row.metadata_ or {}).get("tags", []) or []),
        "max_budget": "" if row.max_budget is None else str(row.max_budget),
        "budget_duration": row.budget_duration or "",
        "rpm_limit": "" if row.rpm_limit is None else str(row.rpm_limit),
        "tpm_limit": "" if row.tpm_limit is None else str(row.tpm_limit),
        "max_parallel_requests": ""
        if row.max_parallel_requests is None
        else str(row.max_parallel_requests),
        "metadata": "" if not metadata else _json(metadata),
    }


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1)


class KeyViews:
    """The key pages."""

    def __init__(self, ui: UiContext) -> None:
        self._ui = ui

    async def _key(self, viewer: Viewer, short_id: str) -> Key:
        async with self._ui.sessions() as db:
            row = await key_by_id(db, short_id)
        if row is None:
            raise PageError(404, "No such key", "No key has this id; it may have been deleted.")
        if not viewer.is_admin and (viewer.key is None or viewer.key.token != row.token):
            raise admin_only()
        return row

    async def index(self, request: Request) -> Response:
        """GET /ui/keys: search, filters and pages, all done by the database."""
        viewer = await self._ui.require(request, admin=True)
        q = request.query_params
        search = KeySearch(
            text=(q.get("q") or "").strip()[:256] or None,
            user_id=(q.get("user_id") or "").strip()[:256] or None,
            team_id=(q.get("team_id") or "").strip()[:256] or None,
            blocked=_YES_NO.get(q.get("blocked", "")),
            expired=_YES_NO.get(q.get("expired", "")),
        )
        page = page_number(q.get("page"))
        async with self._ui.sessions() as db:
            rows, total = await search_keys(db, search, self._ui.clock(), page, PAGE_SIZE)
        return self._ui.render(
            request,
            "keys.html",
            viewer,
            keys=rows,
            search=search,
            query=q,
            paging=Paging(page, PAGE_SIZE, total, len(rows)),
            now=self._ui.clock(),
        )

    async def new_page(self, request: Request) -> Response:
        """GET /ui/keys/new."""
        viewer = await self._ui.require(request, admin=True)
        return self._ui.render(request, "key_form.html", viewer, values={}, creating=True)

    async def create(self, request: Request) -> Response:
        """POST /ui/keys/new: the plaintext is in this answer only (never stored, never shown
        again)."""
        viewer = await self._ui.require(request, admin=True)
        form = await self._ui.form(request, viewer)
        try:
            fields = forms.key_settings(form, creating=True)
            secret = forms.text(form, "key")
            if secret is not None:
                fields["key"] = secret
            if form.get("blocked") == "on":
                fields["blocked"] = True
            req = forms.validated(GenerateKeyRequest, fields)
            secret, row = await self._ui.keys.generate(req)
        except (PageError, GatewayError) as exc:
            error = exc.message
            values = _form_values(form)
            values.pop("key", None)  # a chosen secret is not sent back
            return self._ui.render(
                request, "key_form.html", viewer, 422, values=values, creating=True, error=error
            )
        response = self._ui.render(
            request, "key_secret.html", viewer, key=row, secret=secret, regenerated=False
        )
        return response

    async def detail(self, request: Request) -> Response:
        """GET /ui/keys/{id}: spend over the last 14 days, budget, rate limits in use,
        recent calls."""
        viewer = await self._ui.require(request)
        row = await self._key(viewer, request.path_params["key_id"])
        now = self._ui.clock()
        end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        window = Window(end - timedelta(days=14), end, row.token)
        async with self._ui.sessions() as db:
            await custom_plans(db)
            points = await series(db, window, "day")
            calls, _ = await log_page(db, SpendFilter(token=row.token), 1, 20)
        budgets = await budget_lines(self._ui.limits, row) if self._ui.limits else None
        rates = await rate_lines(self._ui.limits, row) if self._ui.limits else None
        return self._ui.render(
            request,
            "key_detail.html",
            viewer,
            key=row,
            points=points,
            calls=calls,
            now=now,
            budgets=budgets,
            rates=rates,
            shared=bool(self._ui.settings.redis_url),
            counted_by=counted_by(self._ui.limits) if self._ui.limits else None,
        )

    async def edit_page(self, request: Request) -> Response:
        """GET /ui/keys/{id}/edit."""
        viewer = await self._ui.require(request, admin=True)
        row = await self._key(viewer, request.path_params["key_id"])
        return self._ui.render(
            request, "key_form.html", viewer, key=row, values=key_values(row), creating=False
        )

    async def edit(self, request: Request) -> Response:
        """POST /ui/keys/{id}/edit: every field of the form is the key's new setting."""
        viewer = await self._ui.require(request, admin=True)
        row = await self._key(viewer, request.path_params["key_id"])
        form = await self._ui.form(request, viewer)
        try:
            fields = forms.key_settings(form, creating=False)
            fields["key"] = row.token
            await self._ui.keys.update(forms.validated(UpdateKeyRequest, fields))
        except (PageError, GatewayError) as exc:
            return self._ui.render(
                request,
                "key_form.html",
                viewer,
                422,
                key=row,
                values=_form_values(form),
                creating=False,
                error=exc.message,
            )
        return self._back_to(request, row)

    async def block(self, request: Request) -> Response:
        """POST /ui/keys/{id}/block."""
        return await self._set_blocked(request, True)

    async def unblock(self, request: Request) -> Response:
        """POST /ui/keys/{id}/unblock."""
        return await self._set_blocked(request, False)

    async def _set_blocked(self, request: Request, blocked: bool) -> Response:
        viewer = await self._ui.require(request, admin=True)
        row = await self._key(viewer, request.path_params["key_id"])
        await self._ui.form(request, viewer)
        try:
            await self._ui.keys.set_blocked(row.token, blocked)
        except GatewayError as exc:
            raise action_failed(exc) from None
        return self._back_to(request, row)

    async def regenerate_page(self, request: Request) -> Response:
        """GET /ui/keys/{id}/regenerate: asks for the grace period."""
        viewer = await self._ui.require(request, admin=True)
        row = await self._key(viewer, request.path_params["key_id"])
        return self._ui.render(request, "key_regenerate.html", viewer, key=row)

    async def regenerate(self, request: Request) -> Response:
        """POST /ui/keys/{id}/regenerate: the new plaintext is shown once."""
        viewer = await self._ui.require(request, admin=True)
        row = await self._key(viewer, request.path_params["key_id"])
        form = await self._ui.form(request, viewer)
        fields: dict[str, Any] = {"key": row.token}
        grace = forms.text(form, "grace_period")
        if grace is not None:
            fields["grace_period"] = grace
        try:
            secret, updated = await self._ui.keys.regenerate(
                forms.validated(RegenerateKeyRequest, fields)
            )
        except (PageError, GatewayError) as exc:
            return self._ui.render(
                request, "key_regenerate.html", viewer, 422, key=row, error=exc.message
            )
        return self._ui.render(
            request, "key_secret.html", viewer, key=updated, secret=secret, regenerated=True
        )

    async def delete_page(self, request: Request) -> Response:
        """GET /ui/keys/{id}/delete: the confirmation."""
        viewer = await self._ui.require(request, admin=True)
        row = await self._key(viewer, request.path_params["key_id"])
        return self._ui.render(request, "key_delete.html", viewer, key=row)

    async def delete(self, request: Request) -> Response:
        """POST /ui/keys/{id}/delete."""
        viewer = await self._ui.require(request, admin=True)
        row = await self._key(viewer, request.path_params["key_id"])
        await self._ui.form(request, viewer)
        try:
            await self._ui.keys.delete(DeleteKeysRequest(keys=[row.token]))
        except GatewayError as exc:
            raise action_failed(exc) from None
        return RedirectResponse(request.url_for("ui:keys"), status_code=303)

    def _back_to(self, request: Request, row: Key) -> Response:
        return RedirectResponse(
            request.url_for("ui:key", key_id=key_id(row.token)), status_code=303
        )


def key_routes(ui: UiContext) -> list[Route]:
    """The key pages' routes."""
    v = KeyViews(ui)
    one = "/keys/{key_id:str}"
    return [
        Route("/keys", v.index, methods=["GET"], name="ui:keys"),
        Route("/keys/new", v.new_page, methods=["GET"], name="ui:key_new"),
        Route("/keys/new", v.create, methods=["POST"], name="ui:key_create"),
        Route(one, v.detail, methods=["GET"], name="ui:key"),
        Route(one + "/edit", v.edit_page, methods=["GET"], name="ui:key_edit"),
        Route(one + "/edit", v.edit, methods=["POST"], name="ui:key_edit_post"),
        Route(one + "/block", v.block, methods=["POST"], name="ui:key_block"),
        Route(one + "/unblock", v.unblock, methods=["POST"], name="ui:key_unblock"),
        Route(one + "/regenerate", v.regenerate_page, methods=["GET"], name="ui:key_regen"),
        Route(one + "/regenerate", v.regenerate, methods=["POST"], name="ui:key_regen_post"),
        Route(one + "/delete", v.delete_page, methods=["GET"], name="ui:key_delete"),
        Route(one + "/delete", v.delete, methods=["POST"], name="ui:key_delete_post"),
    ]
