"""Hourly rollups: a batch of stored spend rows folded into ``spend_hourly`` upserts.

The spend writer runs ``RollupStatements.upserts`` in the same transaction as the rows
(through ``SpendStatements.totals``), so a rollup never counts a row that was not stored,
nor misses one that was. Charts and totals of the web UI read only this table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect

from passgate.storage.models import SpendHourly, SpendLog

_ROLLUPS = cast(Table, SpendHourly.__table__)
_LOGS = cast(Table, SpendLog.__table__)
GROUP_COLUMNS = ("hour", "token", "user_id", "team_id", "end_user", "model", "route_family")
# measures taken from one row as they are (None adds nothing)
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
MEASURES = ("requests", "errors", "priced_requests", "cost", *SUMMED, "latency_ms")
_COLUMN_ORDER = tuple(column.name for column in _LOGS.columns)
_AT = {name: _COLUMN_ORDER.index(name) for name in _COLUMN_ORDER}
_SUMMED_AT = tuple(_AT[name] for name in SUMMED)
_FAMILY_MAX = 256
_FLOATS = ("cost", "audio_seconds", "latency_ms")  # 0.0, not 0: asyncpg binds them as float8
_ZEROS = tuple(0.0 if name in _FLOATS else 0 for name in MEASURES)
# a path segment that names a thing (a file, a job, a model id) rather than an operation:
# it holds a digit or a dot, like ids, uuids and versioned model names do
_ID_SEGMENT = re.compile(r"[0-9.:]")

if tuple(column.name for column in _ROLLUPS.columns) != (*GROUP_COLUMNS, *MEASURES):
    raise RuntimeError("rollups: spend_hourly's columns changed; update GROUP_COLUMNS/MEASURES")


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


def _sqlite_hour(value: str) -> str:
    # SQLAlchemy's SQLite DATETIME text, 'YYYY-MM-DD HH:MM:SS.ffffff', cut to its hour
    return value[:13] + ":00:00.000000"


def _postgres_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


class RollupStatements:
    """The ``spend_hourly`` upsert for one database, and how rows fold into its parameters."""

    def __init__(self, dialect: Dialect) -> None:
        postgres = dialect.name == "postgresql"
        self._hour: Any = _postgres_hour if postgres else _sqlite_hour
        q = dialect.identifier_preparer.quote
        names = (*GROUP_COLUMNS, *MEASURES)
        marks = ", ".join(f"${i + 1}" if postgres else "?" for i in range(len(names)))
        table = q(_ROLLUPS.name)
        updates = ", ".join(f"{q(m)} = {table}.{q(m)} + excluded.{q(m)}" for m in MEASURES)
        # identifiers from the table definition; every value is a bound parameter
        self.sql = (
            f"INSERT INTO {table} ({', '.join(q(n) for n in names)}) "  # noqa: S608
            f"VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(q(g) for g in GROUP_COLUMNS)}) DO UPDATE SET {updates}"
        )

    def parameters(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """One parameter set per (hour, owners, model, route family) among stored rows (their
        driver values in ``spend_logs`` column order), sorted: every process takes the
        rollup rows' locks in the same order, so two writers never deadlock."""
        at = _AT
        start, token, user, team = at["start_time"], at["token"], at["user_id"], at["team_id"]
        end_user, model, route = at["end_user"], at["model"], at["route"]
        status, cost, latency = at["status"], at["cost"], at["latency_ms"]
        hour_of = self._hour
        groups: dict[tuple[Any, ...], list[Any]] = {}
        families: dict[str, str] = {}
        for row in rows:
            path = row[route] or ""
            family = families.get(path)
            if family is None:
                family = families[path] = route_family(path)
            group = (
                hour_of(row[start]),
                row[token] or "",
                row[user] or "",
                row[team] or "",
                row[end_user] or "",
                row[model] or "",
                family,
            )
            sums = groups.get(group)
            if sums is None:
                sums = groups[group] = list(_ZEROS)
            sums[0] += 1
            if (row[status] or 0) >= 400:
                sums[1] += 1
            if row[cost] is not None:
                sums[2] += 1
                sums[3] += row[cost]
            for i, index in enumerate(_SUMMED_AT, 4):
                value = row[index]
                if value:
                    sums[i] += value
            if row[latency]:
                sums[-1] += row[latency]
        return [(*group, *sums) for group, sums in sorted(groups.items(), key=_order)]


def _order(item: tuple[tuple[Any, ...], list[Any]]) -> tuple[str, ...]:
    return tuple(str(part) for part in item[0])
