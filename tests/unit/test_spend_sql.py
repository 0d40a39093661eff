"""The spend writer's driver-level statements: values in the forms SQLAlchemy's types store,
a few fixed statement shapes, totals in a fixed order. Databases: tests/integration."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from passgate.accounting.rows import spend_row
from passgate.accounting.spend_sql import (
    CHUNK,
    COLUMNS,
    RowError,
    SpendStatements,
    SqliteClock,
    owner_sums,
    sizes,
)
from passgate.auth.principal import Principal
from passgate.exchange import Exchange
from passgate.storage.models import SpendLog

SQLITE = sqlite.dialect()
POSTGRES = postgresql.dialect()
TABLE = cast(Table, SpendLog.__table__)
TIMES = [
    datetime(2025, 1, 1, tzinfo=UTC),  # microsecond 0
    datetime(2025, 6, 30, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2025, 3, 1, 1, 30, 0, 5, tzinfo=timezone(timedelta(hours=5))),  # day before in UTC
    datetime(1, 1, 1, tzinfo=UTC),
]


def row(**fields: Any) -> dict[str, Any]:
    now = time.perf_counter()
    ex = Exchange(
        request_id="req-1",
        method="POST",
        route="/mistral/v1/chat/completions",
        upstream_path="/v1/chat/completions",
        provider="mistral",
        start_time=1_700_000_000.5,
        start=now,
        status=200,
        end=now + 0.25,
        principal=Principal(kind="virtual", token="ab" * 32, user_id="u", team_id="t"),
        end_user="alice",
        cost=0.5,
        tags=["a", "é"],
    )
    found = spend_row(ex)
    found.update(fields)
    return found


def sqlalchemy_bind(column: str, value: Any) -> Any:
    """What SQLAlchemy's type for ``column`` sends to SQLite's driver for ``value``."""
    processor = TABLE.c[column].type.dialect_impl(SQLITE).bind_processor(SQLITE)
    return processor(value) if processor else value


@pytest.mark.parametrize("when", TIMES)
def test_sqlite_timestamps_are_sqlalchemys_text(when: datetime) -> None:
    values = row_values_for(SQLITE, start_time=when)
    assert values[COLUMNS.index("start_time")] == sqlalchemy_bind("start_time", when)


class _SmallClock(SqliteClock):
    MEMO = 8


def test_the_sqlite_clock_matches_sqlalchemy_across_seconds_and_a_full_memo() -> None:
    clock = _SmallClock()
    rng = random.Random(7)
    base = datetime(2026, 12, 2, 23, 59, 50, tzinfo=UTC)
    # 30 s across a minute, an hour and a day boundary, revisited after the memo was cleared;
    # then a year's last microsecond and the shared TIMES (year 1, a non-UTC zone)
    times = [base + timedelta(microseconds=rng.randrange(0, 30_000_000)) for _ in range(500)]
    times += [datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), *TIMES]
    for when in times:
        assert clock(when) == sqlalchemy_bind("start_time", when), when
    assert len(clock._seconds) <= _SmallClock.MEMO
    assert clock(None) is None
    with pytest.raises(ValueError):
        clock(datetime(2025, 1, 1))


@pytest.mark.parametrize("when", TIMES)
def test_postgres_timestamps_are_aware_utc(when: datetime) -> None:
    stored = row_values_for(POSTGRES, start_time=when)[COLUMNS.index("start_time")]
    assert stored == when and stored.tzinfo is UTC


@pytest.mark.parametrize("tags", [[], ["a"], ["é", "🚀", 'quote"d', "back\\slash"]])
def test_tags_are_sqlalchemys_json_text(tags: list[str]) -> None:
    for dialect in (SQLITE, POSTGRES):
        values = row_values_for(dialect, tags=tags)
        assert values[COLUMNS.index("tags")] == sqlalchemy_bind("tags", tags)


def test_other_values_pass_unchanged_in_column_order() -> None:
    source = row(first_byte_time=None, cost=None, stream=True)
    for dialect in (SQLITE, POSTGRES):
        values = row_values_for(dialect, **source)
        assert len(values) == len(TABLE.columns)
        for name, value in zip(COLUMNS, values, strict=True):
            if name not in ("start_time", "end_time", "tags"):
                assert value is source[name] or value == source[name], name


@pytest.mark.parametrize(
    "bad",
    [
        {"start_time": datetime(2025, 1, 1)},  # naive: UTCDateTime refuses it too
        {"end_time": "2025-01-01"},
        {"tags": {1, 2}},  # not JSON
    ],
)
def test_a_row_that_cannot_be_converted_raises_row_error(bad: dict[str, Any]) -> None:
    for dialect in (SQLITE, POSTGRES):
        with pytest.raises(RowError):
            row_values_for(dialect, **bad)


def test_a_row_missing_a_column_raises_row_error() -> None:
    incomplete = row()
    del incomplete["status"]
    with pytest.raises(RowError, match="status"):
        list(SpendStatements(SQLITE).insert([incomplete]))


def row_values_for(dialect: Any, **fields: Any) -> list[Any]:
    [(_, params)] = list(SpendStatements(dialect).insert([row(**fields)]))
    assert len(params) == len(COLUMNS)
    return list(params)


def test_sizes_are_full_chunks_then_powers_of_two() -> None:
    allowed = {CHUNK} | {1 << bit for bit in range(CHUNK.bit_length() - 1)}
    assert max(allowed - {CHUNK}) < CHUNK
    for count in range(3 * CHUNK):
        found = list(sizes(count))
        assert sum(found) == count
        assert set(found) <= allowed
        assert found == sorted(found, reverse=True)
        assert len(found) <= count // CHUNK + CHUNK.bit_length() - 1


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES])
def test_each_chunk_is_one_statement_of_its_rows(dialect: Any) -> None:
    statements = SpendStatements(dialect)
    rows = [row(call_id=f"c{i}") for i in range(2 * CHUNK + 37)]
    found = list(statements.insert(rows))
    assert [len(params) // len(COLUMNS) for _, params in found] == [CHUNK, CHUNK, 32, 4, 1]
    starts = [0, CHUNK, 2 * CHUNK, 2 * CHUNK + 32, 2 * CHUNK + 36]
    assert [params[0] for _, params in found] == [f"c{i}" for i in starts]
    for sql, params in found:
        assert sql == statements.insert_sql(len(params) // len(COLUMNS))
        assert sql.endswith("ON CONFLICT (call_id) DO NOTHING RETURNING call_id")
    placeholders = found[-1][0].count("?") if dialect is SQLITE else found[-1][0].count("$")
    assert placeholders == len(COLUMNS)


def test_postgres_placeholders_are_numbered_through_the_rows() -> None:
    sql = SpendStatements(POSTGRES).insert_sql(2)
    assert f"${2 * len(COLUMNS)}" in sql and f"${2 * len(COLUMNS) + 1}" not in sql
    assert "::json" in sql and "::int8" in sql  # out-of-range integers: refused by the server


def test_owner_sums_are_sorted_and_skip_free_or_ownerless_rows() -> None:
    rows = [
        {"token": "b", "cost": 0.25},
        {"token": "a", "cost": 0.5},
        {"token": "b", "cost": 0.25},
        {"token": None, "cost": 1.0},
        {"token": "c", "cost": None},
        {"token": "d", "cost": 0.0},
    ]
    assert owner_sums(rows, "token") == [("a", 0.5), ("b", 0.5)]


def test_totals_update_keys_users_teams_then_upsert_end_users() -> None:
    rows = [row(), row(end_user=None), row(token=None, user_id=None, team_id=None)]
    totals = SpendStatements(SQLITE).totals(rows)
    tables = [sql.replace("INSERT INTO", "INSERT").split()[1] for sql, _ in totals]
    assert tables == ["keys", "users", "teams", "end_users"]
    assert totals[0][1] == [(1.0, "ab" * 32)]
    assert totals[1][1] == [(1.0, "u")] and totals[2][1] == [(1.0, "t")]
    [(end_user, spend, blocked, metadata, created_at)] = totals[3][1]
    assert (end_user, spend, blocked, metadata) == ("alice", 1.0, False, "{}")
    assert created_at == sqlalchemy_bind("start_time", datetime.fromisoformat(created_at + "Z"))
    assert SpendStatements(POSTGRES).totals([]) == []


def test_only_sqlite_and_postgres() -> None:
    with pytest.raises(ValueError, match="mysql"):
        SpendStatements(type("Dialect", (), {"name": "mysql"})())
