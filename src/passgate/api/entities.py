"""Budget holders above keys, with LiteLLM's routes: users, teams and customers (end users).

``POST /user/new``, ``GET /user/info``, ``POST /user/update``, ``POST /team/new``,
``GET /team/info``, ``POST /team/update``, ``POST /customer/new``,
``POST /customer/update`` (``GET /customer/info`` lives with the spend routes).
All need the master key. A ``budget_duration`` starts its first period at once,
so ``budget_reset_at`` is shown from the start. After a change, ``on_change``
tells the limits (on every instance) to drop their cached copy of the budget.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from passgate import errors
from passgate.api.admin_auth import AdminContext, require_admin
from passgate.api.entity_schemas import (
    BudgetedRequest,
    CustomerRequest,
    TeamQuery,
    TeamRequest,
    UserQuery,
    UserRequest,
    customer_info,
    team_info,
    user_info,
)
from passgate.api.key_schemas import (
    GenerateKeyRequest,
    key_info,
)
from passgate.api.key_service import KeyService, conflict
from passgate.api.responses import json_response
from passgate.api.validation import describe, invalid, parse_body, parse_query, read_body
from passgate.durations import parse_duration
from passgate.limits.backend import ScopeKind
from passgate.storage import entities_repo, keys_repo
from passgate.storage.models import EndUser, Team, User, utcnow

OnChange = Callable[[ScopeKind, str], Awaitable[None]]
MAX_LISTED_KEYS = 1000
_KINDS: dict[type[Any], ScopeKind] = {User: "user", Team: "team", EndUser: "end_user"}
_KEY_FIELDS = (
    "key_alias",
    "duration",
    "models",
    "allowed_routes",
    "team_id",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "tags",
)


def budget_columns(req: BudgetedRequest) -> dict[str, Any]:
    """Columns set by the budget fields present in the request (absent ones stay as they are)."""
    given = req.model_fields_set
    values: dict[str, Any] = {}
    if "max_budget" in given:
        values["max_budget"] = req.max_budget
    if "budget_duration" in given:
        values["budget_duration"] = req.budget_duration
        values["budget_reset_at"] = (
            utcnow() + parse_duration(req.budget_duration) if req.budget_duration else None
        )
    return values


def _metadata(
    req: BudgetedRequest, current: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    metadata = dict(req.metadata or {}) if "metadata" in req.model_fields_set else dict(current)
    metadata.update({name: value for name, value in extra.items() if value is not None})
    return metadata


class EntityRoutes:
    """Endpoints of the user, team and customer routes."""

    def __init__(self, ctx: AdminContext, on_change: OnChange | None = None) -> None:
        self._ctx = ctx
        self._on_change = on_change
        self._keys = KeyService(ctx.sessions, ctx.cache, ctx.authenticator.master)

    async def new_user(self, request: Request) -> Response:
        """POST /user/new: a user, and (unless ``auto_create_key`` is false) a key for it."""
        await require_admin(request, self._ctx)
        req = parse_body(UserRequest, await read_body(request))
        key_request = _key_request(req) if req.auto_create_key else None
        user_id = req.user_id or str(uuid.uuid4())
        extra = {"user_email": req.user_email, "user_role": req.user_role}
        values = {
            "user_alias": req.user_alias,
            **budget_columns(req),
            "metadata_": _metadata(req, {}, extra),
        }
        row = await self._create(User, user_id, values, "user_id")
        data = user_info(row)
        if key_request is not None:
            try:
                secret, key = await self._keys.generate(
                    key_request.model_copy(update={"user_id": user_id})
                )
            except Exception:
                await self._delete(User, user_id)  # no user left half-made
                raise
            data.update(key=secret, token=key.token, key_alias=key.key_alias)
        return json_response(data)

    async def user(self, request: Request) -> Response:
        """GET /user/info?user_id=..."""
        await require_admin(request, self._ctx)
        query = parse_query(UserQuery, request)
        async with self._ctx.sessions() as session:
            row = await _existing(session, User, query.user_id)
            keys, _ = await keys_repo.page(
                session, keys_repo.KeyFilter(user_id=query.user_id), 1, MAX_LISTED_KEYS
            )
        teams = sorted({key.team_id for key in keys if key.team_id})
        return json_response(
            {
                "user_id": row.user_id,
                "user_info": user_info(row),
                "keys": [key_info(key) for key in keys],
                "teams": teams,
            }
        )

    async def update_user(self, request: Request) -> Response:
        """POST /user/update."""
        await require_admin(request, self._ctx)
        req = parse_body(UserRequest, await read_body(request))
        if req.user_id is None:
            raise invalid("field 'user_id': required to name the user to update")
        extra = {"user_email": req.user_email, "user_role": req.user_role}
        named = {"user_alias": req.user_alias} if "user_alias" in req.model_fields_set else {}
        row = await self._update(User, req.user_id, req, extra, named)
        return json_response(user_info(row))

    async def new_team(self, request: Request) -> Response:
        """POST /team/new."""
        await require_admin(request, self._ctx)
        req = parse_body(TeamRequest, await read_body(request))
        values = {
            "team_alias": req.team_alias,
            **budget_columns(req),
            "metadata_": _metadata(req, {}, {}),
        }
        row = await self._create(Team, req.team_id or str(uuid.uuid4()), values, "team_id")
        return json_response(team_info(row))

    async def team(self, request: Request) -> Response:
        """GET /team/info?team_id=..."""
        await require_admin(request, self._ctx)
        query = parse_query(TeamQuery, request)
        async with self._ctx.sessions() as session:
            row = await _existing(session, Team, query.team_id)
            keys, _ = await keys_repo.page(
                session, keys_repo.KeyFilter(team_id=query.team_id), 1, MAX_LISTED_KEYS
            )
        return json_response(
            {
                "team_id": row.team_id,
                "team_info": team_info(row),
                "keys": [key_info(key) for key in keys],
            }
        )

    async def update_team(self, request: Request) -> Response:
        """POST /team/update."""
        await require_admin(request, self._ctx)
        req = parse_body(TeamRequest, await read_body(request))
        if req.team_id is None:
            raise invalid("field 'team_id': required to name the team to update")
        named = {"team_alias": req.team_alias} if "team_alias" in req.model_fields_set else {}
        row = await self._update(Team, req.team_id, req, {}, named)
        return json_response(team_info(row))

    async def new_customer(self, request: Request) -> Response:
        """POST /customer/new."""
        await require_admin(request, self._ctx)
        req = parse_body(CustomerRequest, await read_body(request))
        values = {
            **budget_columns(req),
            "blocked": bool(req.blocked),
            "metadata_": _metadata(req, {}, {"alias": req.alias}),
        }
        row = await self._create(EndUser, req.user_id, values, "user_id")
        return json_response(customer_info(row))

    async def update_customer(self, request: Request) -> Response:
        """POST /customer/update."""
        await require_admin(request, self._ctx)
        req = parse_body(CustomerRequest, await read_body(request))
        named = {"blocked": req.blocked} if req.blocked is not None else {}
        row = await self._update(EndUser, req.user_id, req, {"alias": req.alias}, named)
        return json_response(customer_info(row))

    async def _update(
        self,
        model: type[Any],
        entity_id: str,
        req: BudgetedRequest,
        extra: dict[str, Any],
        named: dict[str, Any],
    ) -> Any:
        async with self._ctx.sessions.begin() as session:
            row = await _existing(session, model, entity_id)
            values = {**budget_columns(req), **named}
            values["metadata_"] = _metadata(req, row.metadata_ or {}, extra)
            await entities_repo.update_fields(session, model, entity_id, values)
        await self._changed(_KINDS[model], entity_id)
        return row

    async def _create(
        self, model: type[Any], entity_id: str, values: dict[str, Any], field: str
    ) -> Any:
        async with self._ctx.sessions.begin() as session:
            if await entities_repo.get(session, model, entity_id) is not None:
                raise conflict(f"{field}: {entity_id!r} already exists")
            row = await entities_repo.upsert(session, model, entity_id, values)
        await self._changed(_KINDS[model], entity_id)  # a cached "no such budget" must go too
        return row

    async def _delete(self, model: type[Any], entity_id: str) -> None:
        async with self._ctx.sessions.begin() as session:
            await entities_repo.remove(session, model, entity_id)

    async def _changed(self, kind: ScopeKind, entity_id: str) -> None:
        if self._on_change is not None:
            await self._on_change(kind, entity_id)


async def _existing(session: AsyncSession, model: type[Any], entity_id: str) -> Any:
    row = await entities_repo.get(session, model, entity_id)
    if row is None:
        kind = _KINDS[model]
        raise errors.not_found(f"No {kind.replace('_', ' ')} with this id.", f"{kind}_not_found")
    return row


def _key_request(req: UserRequest) -> GenerateKeyRequest:
    fields = {name: getattr(req, name) for name in _KEY_FIELDS if name in req.model_fields_set}
    try:
        return GenerateKeyRequest.model_validate(fields)
    except ValidationError as exc:
        raise invalid(describe(exc)) from None


def entity_routes(ctx: AdminContext, on_change: OnChange | None = None) -> list[Route]:
    """The Starlette routes of the user, team and customer API."""
    routes = EntityRoutes(ctx, on_change)
    return [
        Route("/user/new", routes.new_user, methods=["POST"]),
        Route("/user/info", routes.user, methods=["GET"]),
        Route("/user/update", routes.update_user, methods=["POST"]),
        Route("/team/new", routes.new_team, methods=["POST"]),
        Route("/team/info", routes.team, methods=["GET"]),
        Route("/team/update", routes.update_team, methods=["POST"]),
        Route("/customer/new", routes.new_customer, methods=["POST"]),
        Route("/customer/update", routes.update_customer, methods=["POST"]),
    ]
