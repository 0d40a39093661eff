"""Spend routes: ``GET /spend/logs``, ``GET /spend/report``, ``GET /customer/info``.

The master key sees every row; a virtual key sees only its own (its filter is
forced to itself). Keys are shown by ``key_alias``, never by their hash id; the
``key`` filter takes the plaintext key (``sk-...``) or its hash id.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from passgate import errors
from passgate.accounting.spend_queries import (
    SUMMED,
    SpendFilter,
    end_user_info,
    logs_page,
    report,
)
from passgate.api.admin_auth import AdminContext, caller
from passgate.api.key_schemas import no_nul
from passgate.api.responses import json_response
from passgate.api.validation import invalid, parse_query
from passgate.auth.keys import token_for
from passgate.principal import Principal

MAX_PAGE_SIZE = 1000
_TOTALLED = (
    "requests",
    "unpriced_requests",
    "cost",
    *SUMMED,
)

Name = Annotated[str, StringConstraints(min_length=1, max_length=1024), AfterValidator(no_nul)]
Timestamp = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# Bounds of a time filter: any real row lies within, and a bound within cannot overflow
# a datetime when the end of its day is added or when a driver converts it to UTC.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


class _Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    key: Name | None = Field(None, validation_alias=AliasChoices("key", "api_key"))
    user_id: Name | None = None
    team_id: Name | None = None
    end_user: Name | None = Field(
        None, validation_alias=AliasChoices("end_user", "end_user_id", "customer_id")
    )
    model: Name | None = None
    route: Name | None = None
    status: int | None = Field(None, ge=100, le=599)
    start_time: Timestamp | None = Field(
        None, validation_alias=AliasChoices("start_time", "start_date")
    )
    end_time: Timestamp | None = Field(None, validation_alias=AliasChoices("end_time", "end_date"))


class LogsQuery(_Filters):
    """Query string of ``GET /spend/logs``."""

    request_id: Name | None = None
    page: int = Field(1, ge=1, le=1_000_000)
    size: int = Field(
        100, ge=1, le=MAX_PAGE_SIZE, validation_alias=AliasChoices("size", "page_size")
    )


class ReportQuery(_Filters):
    """Query string of ``GET /spend/report``."""

    group_by: Literal[
        "key", "user", "team", "end_user", "model", "route", "provider", "deployment", "day"
    ] = "key"


class CustomerQuery(BaseModel):
    """Query string of ``GET /customer/info``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    end_user_id: Name


def parse_time(name: str, value: str | None, end: bool) -> datetime | None:
    """An ISO 8601 time (naive means UTC); a bare date as an end bound covers that whole day."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        in_utc = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid(
            f"query parameter '{name}' must be an ISO 8601 date or time "
            "(for example 2025-01-31 or 2025-01-31T12:00:00Z)"
        ) from None
    if not EARLIEST <= in_utc < LATEST:
        raise invalid(f"query parameter '{name}' must lie between 1970-01-01 and 9998-12-31")
    if end and "T" not in value and " " not in value:
        moment += timedelta(days=1)
    return moment


def build_filter(query: _Filters, principal: Principal, request_id: str | None) -> SpendFilter:
    """The row filter for this query, limited to the caller's own rows for a virtual key."""
    token = None
    if query.key is not None:
        token = token_for(query.key)
        if token is None:
            raise invalid("query parameter 'key' must be a virtual key (sk-...) or its token id")
    if not principal.is_admin:
        if token is not None and token != principal.token:
            raise errors.forbidden("A virtual key may only read its own spend.", "not_your_key")
        token = principal.token
    start = parse_time("start_time", query.start_time, end=False)
    end = parse_time("end_time", query.end_time, end=True)
    return SpendFilter(
        token=token,
        user_id=query.user_id,
        team_id=query.team_id,
        end_user=query.end_user,
        model=query.model,
        route=query.route,
        status=query.status,
        request_id=request_id,
        start=start,
        end=end,
    )


def _range(flt: SpendFilter) -> dict[str, Any]:
    return {"start_time": flt.start, "end_time": flt.end}


def spend_routes(ctx: AdminContext) -> list[Route]:
    """The spend routes, reading through ``ctx``'s database sessions."""

    async def logs(request: Request) -> Response:
        principal = await caller(request, ctx)
        query = parse_query(LogsQuery, request)
        flt = build_filter(query, principal, query.request_id)
        async with ctx.sessions() as session:
            rows, total = await logs_page(session, flt, query.page, query.size)
        return json_response(
            {
                "data": rows,
                "total": total,
                "page": query.page,
                "page_size": query.size,
                "total_pages": (total + query.size - 1) // query.size,
            }
        )

    async def spend_report(request: Request) -> Response:
        principal = await caller(request, ctx)
        query = parse_query(ReportQuery, request)
        flt = build_filter(query, principal, None)
        async with ctx.sessions() as session:
            groups = await report(session, flt, query.group_by)
        totals = {name: sum(group[name] for group in groups) for name in _TOTALLED}
        return json_response(
            {"group_by": query.group_by, **_range(flt), "data": groups, "totals": totals}
        )

    async def customer_info(request: Request) -> Response:
        principal = await caller(request, ctx)
        query = parse_query(CustomerQuery, request)
        if not principal.is_admin and principal.end_user_id != query.end_user_id:
            raise errors.forbidden(
                "/customer/info needs the master key, or a key fixed to this end user.",
                "admin_only",
            )
        async with ctx.sessions() as session:
            info = await end_user_info(session, query.end_user_id)
        if info is None:
            raise errors.not_found("No end user with this id has been seen.", "end_user_not_found")
        return json_response(info)

    return [
        Route("/spend/logs", logs, methods=["GET"]),
        Route("/spend/report", spend_report, methods=["GET"]),
        Route("/customer/info", customer_info, methods=["GET"]),
    ]
