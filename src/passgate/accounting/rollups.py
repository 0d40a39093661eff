"""Rollups: a batch of stored spend rows folded into ``spend_rollups`` upserts.

The spend writer runs them in the same transaction as the rows (through
``SpendStatements.totals``), so a rollup never counts a row that was not stored, nor misses
one that was. Each row adds to one rollup per period (hour, UTC day, UTC week from Monday)
and dimension (all rows, its key, user, team, end user, model, route family). Charts and
totals of the web UI read only this table; its "top" tables read whole weeks of a long
range from the weekly rollups, which hold up to seven times fewer rows than the daily ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect

from passgate.accounting.spend_queries import SUMMED
from passgate.storage.models import SpendLog, SpendRollup

_ROLLUPS = cast(Table, SpendRollup.__table__)
_LOGS = cast(Table, SpendLog.__table__)
KEY_COLUMNS = ("period", "dimension", "start", "value")
PERIODS = ("hour", "day", "week")
# dimension -> the spend_logs column it is read from ("all" counts every row once)
DIMENSIONS = {
    "all": None,
    "key": "token",
    "user": "user_id",
    "team": "team_id",
    "end_user": "end_user",
    "model": "model",
    "route": "route",
}
MEASURES = ("requests", "errors", "priced_requests", "cost", *SUMMED, "latency_ms")
_FLOATS = ("cost", "audio_seconds", "latency_ms")  # 0.0, not 0: asyncpg binds them as float8
_ZEROS = tuple(0.0 if name in _FLOATS else 0 for name in MEASURES)
_AT = {column.name: i for i, column in enumerate(_LOGS.columns)}
_SUMMED_AT = tuple(_AT[name] for name in SUMMED)
_LATENCY = MEASURES.index("latency_ms")
_FAMILY_MAX = 256
# a path segment that names a thing (a file, a job, a model id) rather than an operation:
# it holds a digit or a dot, like ids, uuids and versioned model names do
_ID_SEGMENT = re.compile(r"[0-9.:]")

if tuple(column.name for column in _ROLLUPS.columns) != (*KEY_COLUMNS, *MEASURES) or tuple(
    DIMENSIONS
) != ("all", "key", "user", "team", "end_user", "model", "route"):
    raise RuntimeError("rollups: spend_rollups's columns changed; update KEY_COLUMNS/MEASURES")


def route_family(route: str | None) -> str:
    """The route without its ids: ``/mistral/v1/files/abc-123/content`` -> ``/mistral/v1/files``.

    The first two segments (the provider prefix and the API version) are kept as they are;
    after them, segments are kept until the first that looks like an id.
    """
    if not route:
        return ""
    path = route.split("?", 1)[0]
    segments = [segment for segment in path.split("/") if segment]
    kept = segments[:2]
    for segment in segments[2:]:
        if _ID_SEGMENT.search(segment):
            break
        kept.append(segment)
    return ("/" + "/".join(kept))[:_FAMILY_MAX]


# SQLAlchemy's SQLite DATETIME text is 'YYYY-MM-DD HH:MM:SS.ffffff': cut to the hour or day
def _sqlite_hour(value: str) -> str:
    return value[:13] + ":00:00.000000"


def _sqlite_day(value: str) -> str:
    return value[:10] + " 00:00:00.000000"


def _sqlite_week(value: str) -> str:
    day = date.fromisoformat(value[:10])
    return (day - timedelta(days=day.weekday())).isoformat() + " 00:00:00.000000"


def week_start(value: datetime) -> datetime:
    """The start of the UTC week (Monday, 00:00) that ``value`` (an aware UTC time) falls in."""
    day = value.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def _postgres_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def _postgres_day(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


class RollupStatements:
    """The ``spend_rollups`` upsert for one database, and how rows fold into its parameters."""

    def __init__(self, dialect: Dialect) -> None:
        postgres = dialect.name == "postgresql"
        self._starts: tuple[Callable[[Any], Any], Callable[[Any], Any], Callable[[Any], Any]] = (
            (_postgres_hour, _postgres_day, week_start)
            if postgres
            else (_sqlite_hour, _sqlite_day, _sqlite_week)
        )
        q = dialect.identifier_preparer.quote
        names = (*KEY_COLUMNS, *MEASURES)
        marks = ", ".join(f"${i + 1}" if postgres else "?" for i in range(len(names)))
        table = q(_ROLLUPS.name)
        updates = ", ".join(f"{q(m)} = {table}.{q(m)} + excluded.{q(m)}" for m in MEASURES)
        # identifiers from the table definition; every value is a bound parameter
        self.sql = (
            f"INSERT INTO {table} ({', '.join(q(n) for n in names)}) "  # noqa: S608
            f"VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(q(k) for k in KEY_COLUMNS)}) DO UPDATE SET {updates}"
        )

    def parameters(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """One parameter set per (period, dimension, start, value) among stored rows (their
        driver values in ``spend_logs`` column order), sorted: every process takes the
        rollup rows' locks in the same order, so two writers never deadlock.

        Rows are added up per hour first; the day rollups are then added up from those
        hour rollups, and the week rollups from the day rollups, so each row is touched
        seven times, not twenty-one.
        """
        start_at, status_at, cost_at = _AT["start_time"], _AT["status"], _AT["cost"]
        latency_at, route_at = _AT["latency_ms"], _AT["route"]
        token_at, user_at, team_at = _AT["token"], _AT["user_id"], _AT["team_id"]
        end_user_at, model_at = _AT["end_user"], _AT["model"]
        hour_of, day_of, week_of = self._starts
        hours: dict[tuple[str, Any, str], list[Any]] = {}
        families: dict[str, str] = {}
        for row in rows:
            path = row[route_at] or ""
            family = families.get(path)
            if family is None:
                family = families[path] = route_family(path)
            # the row's non-zero measures as (index in MEASURES, amount)
            cost, latency = row[cost_at], row[latency_at]
            adds = [(0, 1)]
            if (row[status_at] or 0) >= 400:
                adds.append((1, 1))
            if cost is not None:
                adds += ((2, 1), (3, cost))
            adds += [(i, row[at]) for i, at in enumerate(_SUMMED_AT, 4) if row[at]]
            if latency:
                adds.append((_LATENCY, latency))
            hour = hour_of(row[start_at])
            for group in (
                ("all", hour, ""),
                ("key", hour, row[token_at] or ""),
                ("user", hour, row[user_at] or ""),
                ("team", hour, row[team_at] or ""),
                ("end_user", hour, row[end_user_at] or ""),
                ("model", hour, row[model_at] or ""),
                ("route", hour, family),
            ):
                sums = hours.get(group)
                if sums is None:
                    sums = hours[group] = list(_ZEROS)
                for i, amount in adds:
                    sums[i] += amount
        days = _coarser(hours, day_of)
        weeks = _coarser(days, week_of)
        # "day" < "hour" < "week"; within a period, (dimension, start, value): the primary
        # key's order (one batch's starts are all text, or all datetimes)
        found = [("day", *group, *sums) for group, sums in sorted(days.items())]
        found += [("hour", *group, *sums) for group, sums in sorted(hours.items())]
        found += [("week", *group, *sums) for group, sums in sorted(weeks.items())]
        return found


def _coarser(
    finer: dict[tuple[str, Any, str], list[Any]], start_of: Callable[[Any], Any]
) -> dict[tuple[str, Any, str], list[Any]]:
    """Rollups of a finer period added up into the period that ``start_of`` gives."""
    found: dict[tuple[str, Any, str], list[Any]] = {}
    starts: dict[Any, Any] = {}  # a batch spans few periods: compute each start once
    width = range(len(MEASURES))
    for (dimension, at, value), sums in finer.items():
        start = starts.get(at)
        if start is None:
            start = starts[at] = start_of(at)
        group = (dimension, start, value)
        total = found.get(group)
        if total is None:
            found[group] = list(sums)
        else:
            for i in width:
                total[i] += sums[i]
    return found
