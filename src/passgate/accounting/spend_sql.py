"""The spend writer's statements at driver level: pre-built SQL, plain values, fixed shapes.

Through SQLAlchemy's compiled statements a spend row cost ~25 µs of event-loop CPU (a type
processor per value, parameter dictionaries, insertmanyvalues) and each batch's totals
another ~1 ms. Here a row becomes driver values in one pass, in exactly the form the ORM's
column types store, so ``SpendLog`` reads them back unchanged:

- timestamps (``UTCDateTime``): PostgreSQL gets the aware UTC ``datetime`` (``timestamptz``);
  SQLite gets SQLAlchemy's DATETIME text of the naive UTC time, ``YYYY-MM-DD
  HH:MM:SS.ffffff``, so range filters and ``strftime`` in spend queries compare the same
  strings as ever; a naive datetime is refused, as ``UTCDateTime`` refuses it;
- JSON (``tags``): ``json.dumps`` text, as SQLAlchemy's JSON type writes it;
- every other column: the value as it is (both drivers bind str, int, float, bool, None).

Rows go in chunks of at most ``CHUNK``, one multi-row ``VALUES`` statement each, so the
event loop converts and encodes one chunk at a time and runs other callbacks while the
database works. A chunk smaller than ``CHUNK`` is cut into powers of two, so there are only
nine statement texts: the drivers' per-connection caches of prepared statements (sqlite3:
128, asyncpg under SQLAlchemy: 100) cannot fill up with one many-parameter statement per
batch size, as they did when every batch size made its own statement.

The totals are one ``executemany`` per table, ids in sorted order: every process takes the
row locks in the same order, so two writers never deadlock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import JSON, Boolean, Float, Integer, String, Table
from sqlalchemy.engine import Dialect

from passgate.storage.models import EndUser, Key, SpendLog, Team, User, UTCDateTime, utcnow

# Rows per statement at most, a power of two. Each statement is a thread hop (aiosqlite) or
# a round trip (asyncpg) that waits for a turn of a busy event loop: with 100-row chunks the
# writer fell behind at ~2,000 rows/s under load and its queue grew without bound.
CHUNK = 256

Row = dict[str, Any]
Convert = Callable[[Any], Any]
Statement = tuple[str, tuple[Any, ...]]  # SQL for exec_driver_sql, positional parameters

_TABLE = cast(Table, SpendLog.__table__)
_OWNERS = (  # (table, its id column, the row field naming the owner) of a running total
    (Key.__tablename__, "token", "token"),
    (User.__tablename__, "user_id", "user_id"),
    (Team.__tablename__, "team_id", "team_id"),
)
_END_USERS = EndUser.__tablename__
COLUMNS: tuple[str, ...] = tuple(column.name for column in _TABLE.columns)
_CONFLICT = "call_id"
_EMPTY_JSON = json.dumps([])
_EMPTY_OBJECT_JSON = json.dumps({})  # a new end user's metadata, the model's default
# PostgreSQL parameter casts: integers travel as int8, so a value out of a column's range is
# refused by the server (SQLSTATE 22003, one row) instead of failing to encode in the driver
_PG_CASTS = {"int": "::int8", "json": "::json"}


class RowError(ValueError):
    """A row that cannot become driver values (a naive datetime, a missing column)."""


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:
        return value
    if value.utcoffset() is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


class SqliteClock:
    """SQLAlchemy's SQLite DATETIME text, ``YYYY-MM-DD HH:MM:SS.ffffff``, of UTC datetimes.

    ``isoformat`` is most of what a row costs to convert (~14,000 instructions each, three
    per row: counted with callgrind); a row's times and a batch's rows share their second,
    so the text up to it is kept per second and only the microseconds are formatted
    (~6,800). The memo is cleared when full: it stays small whatever the load.
    """

    __slots__ = ("_seconds",)
    MEMO = 4096

    def __init__(self) -> None:
        self._seconds: dict[tuple[int, ...], str] = {}

    def __call__(self, value: datetime | None) -> str | None:
        """The text of ``value`` (None stays None); a naive datetime raises ``ValueError``."""
        if value is None:
            return None
        if value.tzinfo is not UTC:
            value = cast(datetime, _utc(value))
        key = (value.year, value.month, value.day, value.hour, value.minute, value.second)
        prefix = self._seconds.get(key)
        if prefix is None:
            if len(self._seconds) >= self.MEMO:
                self._seconds.clear()
            prefix = self._seconds[key] = value.isoformat(" ", "seconds")[:19]
        # %-formatting: 3,000 instructions here against 3,600 for the f-string
        return "%s.%06d" % (prefix, value.microsecond)  # noqa: UP031


def _json(value: Any) -> str:
    return _EMPTY_JSON if value == [] else json.dumps(value)


def _kind(name: str) -> str:
    """The driver-level form of a column: time, json, bool, int, float or text."""
    column_type = _TABLE.c[name].type
    for kind, types in (
        ("time", UTCDateTime),
        ("json", JSON),
        ("bool", Boolean),
        ("int", Integer),
        ("float", Float),
        ("text", String),  # Text too
    ):
        if isinstance(column_type, types):
            return kind
    # a new column type needs its stored form written down here, not a guess
    raise TypeError(f"spend_logs.{name}: no driver-level form for {column_type!r}")


_KINDS = {name: _kind(name) for name in COLUMNS}


def _row_values(time: Convert, flag: Convert | None = None) -> Callable[[Row], list[Any]]:
    """A function from a row to its driver values in ``COLUMNS`` order, timestamps through
    ``time`` and booleans through ``flag`` when given; it raises ``RowError`` for a row that
    cannot be converted."""
    get = itemgetter(*COLUMNS)
    kinds = {"time": time, "json": _json}
    if flag is not None:
        kinds["bool"] = flag
    steps = [(i, kinds[_KINDS[name]]) for i, name in enumerate(COLUMNS) if _KINDS[name] in kinds]

    def values(row: Row) -> list[Any]:
        try:
            found = list(get(row))
            for index, convert in steps:
                found[index] = convert(found[index])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RowError(f"{type(exc).__name__}: {exc}") from exc
        return found

    return values


def sizes(count: int) -> Iterator[int]:
    """Rows per statement for ``count`` rows: full chunks, then decreasing powers of two."""
    while count >= CHUNK:
        count -= CHUNK
        yield CHUNK
    while count:
        size = 1 << (count.bit_length() - 1)
        count -= size
        yield size


def owner_sums(rows: Sequence[Row], field: str) -> list[tuple[str, float]]:
    """(owner, cost of its rows) for each owner named in ``field`` whose rows cost something,
    sorted by owner: a fixed order takes row locks in the same order in every process."""
    sums: dict[str, float] = {}
    for row in rows:
        owner, cost = row[field], row["cost"]
        if owner and cost:
            sums[owner] = sums.get(owner, 0.0) + cost
    return sorted(sums.items())


class SpendStatements:
    """The spend writer's statements for one database (SQLite or PostgreSQL)."""

    def __init__(self, dialect: Dialect) -> None:
        if dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"spend rows cannot be written to {dialect.name}")
        self._postgres = dialect.name == "postgresql"
        self._time: Convert = _utc if self._postgres else SqliteClock()
        # sqlite3 binds exact ints, floats and strings directly; a bool (or None) goes
        # through its adaptation look-ups, ~0.3 µs each. SQLite stores booleans as 0 / 1.
        self._values = _row_values(self._time, None if self._postgres else int)
        self._sql: dict[tuple[int, bool], str] = {}
        # sqlite3 reports how many rows an INSERT stored; asyncpg's row count through
        # SQLAlchemy is not relied on, so PostgreSQL always asks with RETURNING
        self.counts_rows = not self._postgres
        q = dialect.identifier_preparer.quote
        p = self._param
        # identifiers from the table definitions; every value is a bound parameter
        self._head = (
            f"INSERT INTO {q(_TABLE.name)} "  # noqa: S608
            f"({', '.join(q(name) for name in COLUMNS)}) VALUES "
        )
        self._tail = f" ON CONFLICT ({q(_CONFLICT)}) DO NOTHING"
        self._returning = f" RETURNING {q(_CONFLICT)}"
        self._updates = [
            (
                f"UPDATE {q(table)} SET spend = spend + {p(1)} "  # noqa: S608
                f"WHERE {q(id_column)} = {p(2)}",
                field,
            )
            for table, id_column, field in _OWNERS
        ]
        json_cast = _PG_CASTS["json"] if self._postgres else ""
        end_users = q(_END_USERS)
        # the columns SQLAlchemy filled from the model's Python-side defaults, filled alike
        self._end_users = (
            f"INSERT INTO {end_users} (end_user_id, spend, blocked, {q('metadata')}, "  # noqa: S608
            f"created_at) VALUES ({p(1)}, {p(2)}, {p(3)}, {p(4)}{json_cast}, {p(5)}) "
            f"ON CONFLICT (end_user_id) DO UPDATE SET spend = {end_users}.spend + excluded.spend"
        )

    def _param(self, number: int) -> str:
        return f"${number}" if self._postgres else "?"

    def _placeholders(self, rows: int) -> str:
        if not self._postgres:
            one = "(" + ", ".join("?" * len(COLUMNS)) + ")"
            return ", ".join([one] * rows)
        casts = [_PG_CASTS.get(_KINDS[name], "") for name in COLUMNS]
        width = len(COLUMNS)
        return ", ".join(
            "(" + ", ".join(f"${row * width + i + 1}{cast}" for i, cast in enumerate(casts)) + ")"
            for row in range(rows)
        )

    def insert_sql(self, rows: int, returning: bool = True) -> str:
        """The INSERT of ``rows`` rows (``CHUNK`` or a power of two below it)."""
        sql = self._sql.get((rows, returning))
        if sql is None:
            sql = self._head + self._placeholders(rows) + self._tail
            if returning:
                sql += self._returning
            self._sql[rows, returning] = sql
        return sql

    def insert(self, rows: Sequence[Row], returning: bool = True) -> Iterator[Statement]:
        """The INSERT of ``rows`` in chunks, ``ON CONFLICT (call_id) DO NOTHING``, with
        ``RETURNING call_id`` (which rows were new) unless ``returning`` is false: (SQL,
        parameters) for ``exec_driver_sql``, each built only when it is reached; raises
        ``RowError`` for a row that cannot be stored."""
        start = 0
        values = self._values
        for size in sizes(len(rows)):
            params: list[Any] = []
            for row in rows[start : start + size]:
                params += values(row)
            start += size
            yield self.insert_sql(size, returning), tuple(params)

    def totals(self, rows: Sequence[Row]) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """(SQL, parameter sets) adding the rows' costs to their key, user, team and end-user
        totals; an end user seen for the first time is created with its spend."""
        found: list[tuple[str, list[tuple[Any, ...]]]] = []
        for sql, field in self._updates:
            sums = owner_sums(rows, field)
            if sums:
                found.append((sql, [(cost, owner) for owner, cost in sums]))
        sums = owner_sums(rows, "end_user")
        if sums:
            now = self._time(utcnow())
            new = [(owner, cost, False, _EMPTY_OBJECT_JSON, now) for owner, cost in sums]
            found.append((self._end_users, new))
        return found
