"""The spend writer's statements at driver level: pre-built SQL, plain values, fixed shapes.

Through SQLAlchemy's compiled statements a spend row cost several times the event-loop CPU
(a type processor per value, parameter dictionaries, insertmanyvalues), and each batch's
totals more again (``docs/performance.md``). Here a call record (``call_record.CallRecord``,
as a worker sends it) becomes driver values in one pass by the column readers of
``rows.column_values``, without a row dictionary in between, in exactly the form the
ORM's column types store, so ``SpendLog`` reads them back unchanged:

- timestamps (``UTCDateTime``), from seconds since the epoch: PostgreSQL gets the aware UTC
  ``datetime`` (``timestamptz``); SQLite gets SQLAlchemy's DATETIME text of the naive UTC
  time, ``YYYY-MM-DD HH:MM:SS.ffffff``, so range filters and ``strftime`` in spend queries
  compare the same strings as ever;
- strings cut to their columns and freed of NULs (``rows.clean``), as ``row_from_record``
  makes them;
- JSON (``tags``): ``json.dumps`` text, as SQLAlchemy's JSON type writes it;
- booleans: 0 / 1 on SQLite (as SQLAlchemy stores them), ``bool`` on PostgreSQL;
- every other column: the value as it is (both drivers bind str, int, float, None).

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
import math
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, Boolean, Float, Integer, String, Table
from sqlalchemy.engine import Dialect

from passgate.accounting.rollups import RollupStatements
from passgate.accounting.rows import COLUMNS, clean, column_values
from passgate.call_record import CallRecord
from passgate.storage.models import EndUser, Key, SpendLog, Team, User, UTCDateTime

# Rows per statement at most, a power of two. Each statement is a thread hop (aiosqlite) or
# a round trip (asyncpg) that waits for a turn of a busy event loop: with 100-row chunks the
# writer fell behind at ~2,000 rows/s under load and its queue grew without bound.
CHUNK = 256

Values = list[Any]  # a row's driver values, in ``COLUMNS`` order
Convert = Callable[[Any], Any]
Statement = tuple[str, tuple[Any, ...]]  # SQL for exec_driver_sql, positional parameters

_TABLE = cast(Table, SpendLog.__table__)
_OWNERS = (  # (table, its id column, the spend_logs column naming the owner) of a total
    (Key.__tablename__, "token", "token"),
    (User.__tablename__, "user_id", "user_id"),
    (Team.__tablename__, "team_id", "team_id"),
)
_TAG_MAX = 256
_END_USERS = EndUser.__tablename__
_CONFLICT = "call_id"
_EMPTY_JSON = json.dumps([])
_EMPTY_OBJECT_JSON = json.dumps({})  # a new end user's metadata, the model's default
# PostgreSQL parameter casts: integers travel as int8, so a value out of a column's range is
# refused by the server (SQLSTATE 22003, one row) instead of failing to encode in the driver
_PG_CASTS = {"int": "::int8", "json": "::json"}


class RowError(ValueError):
    """A call record that cannot become driver values (a value of the wrong kind)."""


class SqliteClock:
    """SQLAlchemy's SQLite DATETIME text, ``YYYY-MM-DD HH:MM:SS.ffffff``, of the UTC time of
    seconds since the epoch: the text of ``datetime.fromtimestamp(t, UTC)``.

    A row's times and a batch's rows share their second, so the text up to it is kept per
    second and only the microseconds are formatted; they are rounded as ``fromtimestamp``
    rounds them (half to even, carrying into the second). The memo is cleared when full: it
    stays small whatever the load.
    """

    __slots__ = ("_seconds",)
    MEMO = 4096

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}

    def __call__(self, timestamp: float) -> str:
        """The text of ``timestamp``; ``TypeError`` when it is not a number."""
        fraction, whole = math.modf(timestamp)
        micro = round(fraction * 1e6)
        second = int(whole)
        if micro >= 1_000_000:
            second += 1
            micro -= 1_000_000
        elif micro < 0:
            second -= 1
            micro += 1_000_000
        prefix = self._seconds.get(second)
        if prefix is None:
            if len(self._seconds) >= self.MEMO:
                self._seconds.clear()
            prefix = datetime.fromtimestamp(second, UTC).isoformat(" ", "seconds")[:19]
            self._seconds[second] = prefix
        # %-formatting: fewer instructions here than the f-string (docs/performance.md)
        return "%s.%06d" % (prefix, micro)  # noqa: UP031


def _aware(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


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
_OWNER_INDEX = {name: COLUMNS.index(name) for name in ("token", "user_id", "team_id", "end_user")}
_COST = COLUMNS.index("cost")
_CALL_ID = COLUMNS.index("call_id")


def _tags(tags: Any) -> str:
    if not tags:
        return _EMPTY_JSON
    return json.dumps([tag for tag in (clean(t, _TAG_MAX) for t in tags) if tag])


def _record_values(clock: Convert, flag: Convert) -> Callable[[CallRecord], list[Any]]:
    """A function from a call record to its driver values in ``COLUMNS`` order: the row
    ``rows.row_from_record`` makes, by the same compiled column expressions, in the form the
    column types store (times through ``clock``, booleans through ``flag``, tags as JSON text); it
    raises ``RowError`` for a record that cannot be converted."""
    convert = column_values(clock, flag, _tags)

    def values(record: CallRecord) -> list[Any]:
        try:
            return convert(record)
        except (TypeError, ValueError, OverflowError, OSError, IndexError) as exc:
            raise RowError(f"{type(exc).__name__}: {exc}") from exc

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


def owner_sums(rows: Sequence[Values], field: str) -> list[tuple[str, float]]:
    """(owner, cost of its rows) for each owner named in the column ``field`` of stored
    values whose rows cost something, sorted by owner: a fixed order takes row locks in the
    same order in every process."""
    index = _OWNER_INDEX[field]
    sums: dict[str, float] = {}
    for row in rows:
        owner, cost = row[index], row[_COST]
        if owner and cost:
            sums[owner] = sums.get(owner, 0.0) + cost
    return sorted(sums.items())


def call_id_of(values: Values) -> Any:
    """The call id among a row's driver values."""
    return values[_CALL_ID]


class SpendStatements:
    """The spend writer's statements for one database (SQLite or PostgreSQL)."""

    def __init__(self, dialect: Dialect) -> None:
        if dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"spend rows cannot be written to {dialect.name}")
        self._postgres = dialect.name == "postgresql"
        self._rollups = RollupStatements(dialect)
        self._time: Convert = _aware if self._postgres else SqliteClock()
        # sqlite3 binds exact ints, floats and strings directly; a bool (or None) goes
        # through its slower adaptation look-ups. SQLite stores booleans as 0 / 1.
        self._values = _record_values(self._time, bool if self._postgres else int)
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

    def insert(
        self,
        records: Sequence[CallRecord],
        returning: bool = True,
        into: list[Values] | None = None,
    ) -> Iterator[Statement]:
        """The INSERT of call records in chunks, ``ON CONFLICT (call_id) DO NOTHING``, with
        ``RETURNING call_id`` (which rows were new) unless ``returning`` is false: (SQL,
        parameters) for ``exec_driver_sql``, each built only when it is reached; each
        record's driver values are appended to ``into`` when given. Raises ``RowError`` for
        a record that cannot be stored."""
        start = 0
        values = self._values
        for size in sizes(len(records)):
            params: list[Any] = []
            for record in records[start : start + size]:
                found = values(record)
                params += found
                if into is not None:
                    into.append(found)
            start += size
            yield self.insert_sql(size, returning), tuple(params)

    def totals(self, rows: Sequence[Values]) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """(SQL, parameter sets) adding the costs of stored rows (their driver values) to
        their key, user, team and end-user totals, and the rows to their hourly rollups; an
        end user seen for the first time is created with its spend."""
        found: list[tuple[str, list[tuple[Any, ...]]]] = []
        for sql, field in self._updates:
            sums = owner_sums(rows, field)
            if sums:
                found.append((sql, [(cost, owner) for owner, cost in sums]))
        sums = owner_sums(rows, "end_user")
        if sums:
            now = self._time(time.time())
            new = [(owner, cost, False, _EMPTY_OBJECT_JSON, now) for owner, cost in sums]
            found.append((self._end_users, new))
        if rows:
            found.append((self._rollups.sql, self._rollups.parameters(rows)))
        return found
