"""Reading the spend log back: filtered pages of rows, grouped totals, end-user totals.

Rows and reports never carry the key's hash id (``token``): keys are shown by alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from passgate.storage.models import EndUser, SpendLog

GROUPS = ("key", "user", "team", "end_user", "model", "route", "provider", "deployment", "day")

_LOGS = cast(Table, SpendLog.__table__)
_END_USERS = cast(Table, EndUser.__table__)
_PUBLIC_COLUMNS = [column for column in _LOGS.columns if column.name != "token"]
_GROUP_COLUMNS = {
    "key": _LOGS.c.token,
    "user": _LOGS.c.user_id,
    "team": _LOGS.c.team_id,
    "end_user": _LOGS.c.end_user,
    "model": _LOGS.c.model,
    "route": _LOGS.c.route,
    "provider": _LOGS.c.provider,
    "deployment": _LOGS.c.deployment,
}
# the usage columns a report adds up, as spend rows and rollups both hold them
SUMMED = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "total_tokens",
    "pages",
    "annotated_pages",
    "audio_seconds",
    "characters",
)


@dataclass(frozen=True, slots=True)
class SpendFilter:
    """Which spend rows to read; every field left None matches everything."""

    token: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    end_user: str | None = None
    model: str | None = None
    route: str | None = None
    status: int | None = None
    request_id: str | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    status_class: int | None = None  # 2 for 2xx, 4 for 4xx, ...

    def clauses(self) -> list[ColumnElement[bool]]:
        """The WHERE conditions of this filter."""
        c = _LOGS.c
        found: list[ColumnElement[bool]] = []
        for column, value in (
            (c.token, self.token),
            (c.user_id, self.user_id),
            (c.team_id, self.team_id),
            (c.end_user, self.end_user),
            (c.model, self.model),
            (c.route, self.route),
            (c.status, self.status),
            (c.request_id, self.request_id),
        ):
            if value is not None:
                found.append(column == value)
        if self.start is not None:
            found.append(c.start_time >= self.start)
        if self.end is not None:
            found.append(c.start_time < self.end)
        if self.status_class is not None:
            low = self.status_class * 100
            found.extend((c.status >= low, c.status < low + 100))
        return found


async def logs_page(
    session: AsyncSession, flt: SpendFilter, page: int, size: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of rows, newest first, and the number of rows matching."""
    where = flt.clauses()
    total = await session.scalar(select(func.count()).select_from(_LOGS).where(*where))
    query = (
        select(*_PUBLIC_COLUMNS)
        .where(*where)
        .order_by(_LOGS.c.start_time.desc(), _LOGS.c.call_id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    rows = [dict(row._mapping) for row in await session.execute(query)]
    return rows, int(total or 0)


def _day(session: AsyncSession) -> ColumnElement[Any]:
    column = _LOGS.c.start_time
    if session.get_bind().dialect.name == "postgresql":
        # timestamptz -> the UTC calendar day, whatever the server's time zone
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)  # SQLite stores naive UTC


async def report(session: AsyncSession, flt: SpendFilter, group_by: str) -> list[dict[str, Any]]:
    """Requests, usage and cost per group (keys are named by alias), biggest cost first."""
    group = _day(session) if group_by == "day" else _GROUP_COLUMNS[group_by]
    c = _LOGS.c
    columns: list[Any] = [
        group.label("group"),
        func.count().label("requests"),
        func.count(c.cost).label("priced_requests"),
        func.coalesce(func.sum(c.cost), 0.0).label("cost"),
    ]
    columns += [func.coalesce(func.sum(c[name]), 0).label(name) for name in SUMMED]
    if group_by == "key":
        columns.append(func.max(c.key_alias).label("key_alias"))
    query = select(*columns).where(*flt.clauses()).group_by(group)
    order = group if group_by == "day" else func.coalesce(func.sum(c.cost), 0.0).desc()
    result = await session.execute(query.order_by(order))
    groups = []
    for row in result:
        item = dict(row._mapping)
        if group_by == "key":
            item["group"] = item.pop("key_alias")  # never the hash id
        item["unpriced_requests"] = item["requests"] - item.pop("priced_requests")
        groups.append(item)
    return groups


async def end_user_info(session: AsyncSession, end_user_id: str) -> dict[str, Any] | None:
    """An end user's spend total and budget fields, or None when it is unknown."""
    row = (
        await session.execute(select(_END_USERS).where(_END_USERS.c.end_user_id == end_user_id))
    ).first()
    if row is None:
        return None
    data = dict(row._mapping)
    return {
        "user_id": data["end_user_id"],  # LiteLLM's name for the end user's id
        "end_user_id": data["end_user_id"],
        "spend": data["spend"],
        "max_budget": data["max_budget"],
        "budget_duration": data["budget_duration"],
        "budget_reset_at": data["budget_reset_at"],
        "blocked": data["blocked"],
        "metadata": data["metadata"],
        "created_at": data["created_at"],
    }
