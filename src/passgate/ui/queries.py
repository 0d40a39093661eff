"""The UI's reads: totals and charts from the hourly rollups, key search, entity lists.

Charts and totals never scan ``spend_logs``: they sum ``spend_rollups`` over whole UTC
days (or hours, for a range that is not whole days); the "top" tables read a long range's
whole weeks from the weekly rollups and only its edges from the daily ones. Only a log
page, and the latency of the most recent calls, read ``spend_logs``, each bounded by an
index and a limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Table, func, or_, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from passgate.accounting.rollups import week_start
from passgate.accounting.spend_queries import SpendFilter
from passgate.storage.models import EndUser, Key, SpendLog, SpendRollup, Team, User

Bucket = Literal["hour", "day"]
Period = Literal["hour", "day", "week"]
_ROLLUPS = cast(Table, SpendRollup.__table__)
_LOGS = cast(Table, SpendLog.__table__)
# the overview's "top" tables: their title and the rollup dimension they read
TOP_GROUPS = {
    "key": "key",
    "model": "model",
    "end user": "end_user",
    "user": "user",
    "team": "team",
    "route": "route",
}
TOTALS = (
    "requests",
    "errors",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "pages",
    "audio_seconds",
)
LATENCY_SAMPLE = 10_000  # the most recent calls whose latency percentiles are shown
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Window:
    """A range of whole UTC hours, and the rows it is limited to (a key's, for a key)."""

    start: datetime
    end: datetime
    token: str | None = None

    @property
    def period(self) -> Bucket:
        """Daily rollups when the range is whole UTC days (fewer rows to add), else hourly."""
        whole_days = self.start.hour == 0 and self.end.hour == 0
        return "day" if whole_days else "hour"

    def spans(self) -> list[tuple[Period, datetime, datetime]]:
        """The window cut into the coarsest rollups that tile it exactly: its whole UTC
        weeks from the weekly rollups, the days before and after them from the daily ones
        (or every hour from the hourly ones, for a range that is not whole days)."""
        if self.period == "hour":
            return [("hour", self.start, self.end)]
        first = week_start(self.start + 6 * _DAY)  # the first Monday on or after start
        last = week_start(self.end)
        if first >= last:
            return [("day", self.start, self.end)]
        found: list[tuple[Period, datetime, datetime]] = [("week", first, last)]
        if self.start < first:
            found.append(("day", self.start, first))
        if last < self.end:
            found.append(("day", last, self.end))
        return found

    def clauses(self, dimension: str, period: Bucket | None = None) -> list[ColumnElement[bool]]:
        """The WHERE conditions on ``spend_rollups`` for one dimension."""
        c = _ROLLUPS.c
        return [
            c.period == (period or self.period),
            c.dimension == dimension,
            c.start >= self.start,
            c.start < self.end,
        ]

    def own(self, period: Bucket | None = None) -> list[ColumnElement[bool]]:
        """The conditions of the window's own rows: every row, or the key's."""
        if self.token is None:
            return self.clauses("all", period)
        return [*self.clauses("key", period), _ROLLUPS.c.value == self.token]


@dataclass(slots=True)
class Overview:
    """What the overview page shows for one window."""

    totals: dict[str, float] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)
    top: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    latency: dict[str, float | None] = field(default_factory=dict)


def _sums(names: tuple[str, ...] = TOTALS) -> list[Any]:
    c = _ROLLUPS.c
    return [func.coalesce(func.sum(c[name]), 0).label(name) for name in names]


async def totals(session: AsyncSession, window: Window) -> dict[str, float]:
    """Requests, errors, cost and usage summed over the window."""
    row = (await session.execute(select(*_sums()).where(*window.own()))).one()
    return {name: float(value or 0) for name, value in row._mapping.items()}


async def series(session: AsyncSession, window: Window, bucket: Bucket) -> list[dict[str, Any]]:
    """One point per hour (or UTC day) of the window, empty ones included."""
    c = _ROLLUPS.c
    period: Bucket = "day" if bucket == "day" and window.period == "day" else "hour"
    query = select(c.start, *_sums()).where(*window.own(period)).group_by(c.start)
    found = {row.start: row._mapping for row in await session.execute(query)}
    step = timedelta(hours=1) if bucket == "hour" else _DAY
    points: list[dict[str, Any]] = []
    at = window.start if bucket == "hour" else window.start.replace(hour=0)
    while at < window.end:
        point: dict[str, Any] = {"at": at, **dict.fromkeys(TOTALS, 0.0)}
        if period == "day":
            stamps = [at]
        else:
            stamps = []
            stamp = max(at, window.start)
            while stamp < min(at + step, window.end):
                stamps.append(stamp)
                stamp += timedelta(hours=1)
        for stamp in stamps:
            sums = found.get(stamp)
            if sums is not None:
                for name in TOTALS:
                    point[name] += float(sums[name] or 0)
        points.append(point)
        at += step
    return points


async def top(
    session: AsyncSession, window: Window, group: str, limit: int = 8
) -> list[dict[str, Any]]:
    """The values of a dimension (keys, models, ...) that cost most in the window.

    Every value's sums are needed to rank them, so the rows read are what costs: whole
    weeks come from the weekly rollups (one row per value and week, not seven).
    """
    c = _ROLLUPS.c
    dimension = TOP_GROUPS[group]
    parts = [
        select(c.value, c.requests, c.cost).where(
            c.period == period, c.dimension == dimension, c.start >= start, c.start < end
        )
        for period, start, end in window.spans()
    ]
    rows = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
    cost, requests = func.sum(rows.c.cost), func.sum(rows.c.requests)
    query = (
        select(
            rows.c.value.label("name"),
            func.coalesce(requests, 0).label("requests"),
            func.coalesce(cost, 0).label("cost"),
        )
        .group_by(rows.c.value)
        .order_by(cost.desc(), requests.desc())
        .limit(limit)
    )
    return [dict(row._mapping) for row in await session.execute(query)]


async def aliases(session: AsyncSession, tokens: list[str]) -> dict[str, str | None]:
    """Key alias by hash id, for the keys that still exist."""
    wanted = [token for token in tokens if token]
    if not wanted:
        return {}
    rows = await session.execute(select(Key.token, Key.key_alias).where(Key.token.in_(wanted)))
    return {token: alias for token, alias in rows}


async def latency(session: AsyncSession, window: Window) -> dict[str, float | None]:
    """p50 and p95 latency (ms) of the window's most recent ``LATENCY_SAMPLE`` calls."""
    c = _LOGS.c
    where = [c.start_time >= window.start, c.start_time < window.end, c.latency_ms.is_not(None)]
    if window.token is not None:
        where.append(c.token == window.token)
    recent = select(c.latency_ms).where(*where).order_by(c.start_time.desc()).limit(LATENCY_SAMPLE)
    values = sorted(float(v) for v in (await session.execute(recent)).scalars())
    if not values:
        return {"p50": None, "p95": None, "sample": 0}

    def rank(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {"p50": rank(0.50), "p95": rank(0.95), "sample": float(len(values))}


# each setting for the transaction only (set_config's third argument)
_POSTGRES_READS = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
    "set_config('jit', 'off', true), "
    "set_config('max_parallel_workers_per_gather', '0', true)"
)


async def custom_plans(session: AsyncSession) -> None:
    """On PostgreSQL, plan this transaction's queries for their actual parameters, and run
    them in one process without JIT.

    The driver prepares each statement once per connection, and after five runs
    PostgreSQL may switch it to a generic plan chosen without the parameters. The same
    statement reads seven rows of one dimension or every key's rows of another, an hour
    or many weeks: a generic plan fit for the costly cases scans the whole table for
    the cheap ones. These reads add up tens of thousands of rows at most: compiling
    them (JIT) or starting parallel workers for them takes longer than it saves.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(_POSTGRES_READS)


async def overview(session: AsyncSession, window: Window, bucket: Bucket) -> Overview:
    """Everything the overview page shows."""
    await custom_plans(session)
    found = Overview(
        totals=await totals(session, window),
        series=await series(session, window, bucket),
        latency=await latency(session, window),
    )
    if window.token is not None:
        return found  # a key's own view: its totals; dimensions are not crossed
    for group in TOP_GROUPS:
        found.top[group] = await top(session, window, group)
    names = await aliases(session, [row["name"] for row in found.top["key"]])
    for row in found.top["key"]:
        row["alias"] = names.get(row["name"])
    return found


@dataclass(frozen=True, slots=True)
class KeySearch:
    """The key list's filters; None means any."""

    text: str | None = None  # part of the alias
    user_id: str | None = None
    team_id: str | None = None
    blocked: bool | None = None
    expired: bool | None = None


async def search_keys(
    session: AsyncSession, search: KeySearch, now: datetime, page: int, size: int
) -> tuple[list[Key], int]:
    """One page of keys matching ``search`` (newest first) and how many match."""
    where: list[ColumnElement[bool]] = []
    if search.text:
        escaped = search.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(Key.key_alias.ilike(f"%{escaped}%", escape="\\"))
    if search.user_id:
        where.append(Key.user_id == search.user_id)
    if search.team_id:
        where.append(Key.team_id == search.team_id)
    if search.blocked is not None:
        where.append(Key.blocked.is_(search.blocked))
    if search.expired is True:
        where.append(Key.expires <= now)
    elif search.expired is False:
        where.append(or_(Key.expires.is_(None), Key.expires > now))
    total = await session.scalar(select(func.count()).select_from(Key).where(*where))
    rows = await session.execute(
        select(Key)
        .where(*where)
        .order_by(Key.created_at.desc(), Key.token)
        .offset((page - 1) * size)
        .limit(size)
    )
    return list(rows.scalars()), int(total or 0)


async def key_by_id(session: AsyncSession, short_id: str) -> Key | None:
    """The key whose hash id starts with ``short_id``; None when none or several do."""
    if not short_id or any(ch not in "0123456789abcdef" for ch in short_id):
        return None
    upper = short_id + "g"  # past every hex digit: a range the primary key index answers
    rows = await session.execute(
        select(Key).where(Key.token >= short_id, Key.token < upper).limit(2)
    )
    found = list(rows.scalars())
    return found[0] if len(found) == 1 else None


ENTITIES: dict[str, Any] = {  # User, Team or EndUser
    "users": User,
    "teams": Team,
    "end-users": EndUser,
}


async def entity_page(
    session: AsyncSession, kind: str, text: str | None, page: int, size: int
) -> tuple[list[Any], int]:
    """One page of users, teams or end users (biggest spend first) and how many match."""
    model = ENTITIES[kind]
    id_column = {User: User.user_id, Team: Team.team_id, EndUser: EndUser.end_user_id}[model]
    where: list[ColumnElement[bool]] = []
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(id_column.ilike(f"%{escaped}%", escape="\\"))
    total = await session.scalar(select(func.count()).select_from(model).where(*where))
    rows = await session.execute(
        select(model)
        .where(*where)
        .order_by(model.spend.desc(), id_column)
        .offset((page - 1) * size)
        .limit(size)
    )
    return list(rows.scalars()), int(total or 0)


PUBLIC_LOG_COLUMNS = [column for column in _LOGS.columns if column.name != "token"]


async def log_page(
    session: AsyncSession, flt: SpendFilter, page: int, size: int
) -> tuple[list[dict[str, Any]], bool]:
    """One page of spend rows (newest first, never the key hash id) and whether more follow.

    No count of every matching row: on a large log that count is the slow part.
    """
    query = (
        select(*PUBLIC_LOG_COLUMNS)
        .where(*flt.clauses())
        .order_by(_LOGS.c.start_time.desc(), _LOGS.c.call_id.desc())
        .offset((page - 1) * size)
        .limit(size + 1)
    )
    rows = [dict(row._mapping) for row in await session.execute(query)]
    return rows[:size], len(rows) > size


async def log_row(session: AsyncSession, flt: SpendFilter, call_id: str) -> dict[str, Any] | None:
    """One spend row by call id, if it passes ``flt`` (a key sees only its own)."""
    query = select(*PUBLIC_LOG_COLUMNS).where(*flt.clauses(), _LOGS.c.call_id == call_id)
    row = (await session.execute(query)).first()
    return None if row is None else dict(row._mapping)
