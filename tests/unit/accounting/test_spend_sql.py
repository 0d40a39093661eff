"""The spend writer's driver-level statements: values in the forms SQLAlchemy's types store,
a few fixed statement shapes, totals in a fixed order. Databases: tests/integration."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from passgate.accounting.rows import COLUMNS, row_from_record
from passgate.accounting.spend_sql import (
    CHUNK,
    RowError,
    SpendStatements,
    SqliteClock,
    Values,
    owner_sums,
    sizes,
)
from passgate.call_record import CallRecord, call_record
from passgate.exchange import Usage
from passgate.principal import Principal
from passgate.storage.models import SpendLog
from tests.support.exchanges import exchange

SQLITE = sqlite.dialect()
POSTGRES = postgresql.dialect()  # type: ignore[no-untyped-call]
TABLE = cast(Table, SpendLog.__table__)
TIMES = [  # seconds since the epoch, as call records carry them
    1_735_689_600.0,  # 2025-01-01, microsecond 0
    1_751_327_999.999999,  # 2025-06-30 23:59:59.999999 (as near as a float gets)
    1_751_327_999.9999997,  # rounds up into the next second, and the next day
    1_700_000_000.123456,
    -0.5,  # before the epoch: the fraction is carried backwards
]


def record(**fields: Any) -> CallRecord:
    """A finished call's record, with ``fields`` (by name) replaced."""
    now = time.perf_counter()
    ex = exchange(
        start_time=1_700_000_000.5,
        start=now,
        status=200,
        first_byte=now + 0.01,
        end=now + 0.25,
        principal=Principal(kind="virtual", token="ab" * 32, user_id="u", team_id="t"),
        end_user="alice",
        model="mistral-small-latest",
        usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
        cost=0.5,
        tags=["a", "é"],
    )
    return call_record(ex)._replace(**fields)


def sqlalchemy_bind(column: str, value: Any) -> Any:
    """What SQLAlchemy's type for ``column`` sends to SQLite's driver for ``value``."""
    processor = TABLE.c[column].type.dialect_impl(SQLITE).bind_processor(SQLITE)
    return processor(value) if processor else value


def values_of(dialect: Any, source: CallRecord) -> list[Any]:
    [(_, params)] = list(SpendStatements(dialect).insert([source]))
    assert len(params) == len(COLUMNS)
    return list(params)


def row_values_for(dialect: Any, **fields: Any) -> list[Any]:
    return values_of(dialect, record(**fields))


@pytest.mark.parametrize("when", TIMES)
def test_sqlite_timestamps_are_sqlalchemys_text_of_the_utc_time(when: float) -> None:
    values = row_values_for(SQLITE, start_time=when, ttfb=0.25, duration=None)
    expected = datetime.fromtimestamp(when, UTC)
    assert values[COLUMNS.index("start_time")] == sqlalchemy_bind("start_time", expected)
    after = datetime.fromtimestamp(when + 0.25, UTC)
    assert values[COLUMNS.index("first_byte_time")] == sqlalchemy_bind("start_time", after)
    assert values[COLUMNS.index("end_time")] is None


class _SmallClock(SqliteClock):
    MEMO = 8


def test_the_sqlite_clock_rounds_as_fromtimestamp_across_seconds_and_a_full_memo() -> None:
    clock = _SmallClock()
    rng = random.Random(7)
    base = datetime(2026, 12, 2, 23, 59, 50, tzinfo=UTC).timestamp()
    # 30 s across a minute, an hour and a day boundary, revisited after the memo was cleared;
    # times within a few ulps of a half microsecond (rounded half to even); the shared TIMES
    times = [base + rng.random() * 30 for _ in range(2000)]
    times += [base + n / 1e6 + 5e-7 + k * 2.4e-7 for n in range(100) for k in (-1, 0, 1)]
    times += TIMES
    for when in times:
        expected = sqlalchemy_bind("start_time", datetime.fromtimestamp(when, UTC))
        assert clock(when) == expected, when
    assert len(clock._seconds) <= _SmallClock.MEMO
    with pytest.raises(TypeError):
        clock("2025-01-01")  # type: ignore[arg-type]


@pytest.mark.parametrize("when", TIMES)
def test_postgres_timestamps_are_aware_utc(when: float) -> None:
    stored = row_values_for(POSTGRES, start_time=when)[COLUMNS.index("start_time")]
    assert stored == datetime.fromtimestamp(when, UTC) and stored.tzinfo is UTC


@pytest.mark.parametrize(
    ("tags", "kept"),
    [
        ([], []),
        (["a"], ["a"]),
        (["é", "🚀", 'quote"d', "back\\slash"], ["é", "🚀", 'quote"d', "back\\slash"]),
        (["", "x\x00y", "z" * 300], ["xy", "z" * 256]),  # cut as row_from_record cuts them
    ],
)
def test_tags_are_sqlalchemys_json_text(tags: list[str], kept: list[str]) -> None:
    for dialect in (SQLITE, POSTGRES):
        values = row_values_for(dialect, tags=tags)
        assert values[COLUMNS.index("tags")] == sqlalchemy_bind("tags", kept)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"ttfb": None, "cost": None, "stream": True, "interrupted": True, "token": None},
        {"model": "m" * 1000, "error": "e\x00rr", "end_user": "ålice 🚀", "request_id": "r" * 300},
        {"audio_seconds": 1.0 / 3.0, "cost": 0.1 + 0.2, "pages": 4, "annotated_pages": 5},
    ],
)
def test_sqlite_values_are_what_sqlalchemy_binds_for_the_row(fields: dict[str, Any]) -> None:
    source = record(**fields)
    row = row_from_record(source)
    values = values_of(SQLITE, source)
    for name, value in zip(COLUMNS, values, strict=True):
        expected = sqlalchemy_bind(name, row[name])
        assert value == expected and type(value) is type(expected), name


def test_postgres_values_are_the_row_with_tags_as_json_text() -> None:
    fields = {"stream": True, "model": "m" * 1000, "error": "e\x00rr"}
    source = record(**fields)
    row = row_from_record(source)
    values = values_of(POSTGRES, source)
    for name, value in zip(COLUMNS, values, strict=True):
        expected = sqlalchemy_bind("tags", row[name]) if name == "tags" else row[name]
        assert value == expected and type(value) is type(expected), name


@pytest.mark.parametrize(
    "bad",
    [
        {"start_time": "2025-01-01"},  # not seconds since the epoch
        {"duration": "0.5"},
        {"start_time": float("nan")},
        {"start_time": 1e300},  # no year holds it
        {"model": 7},  # a string column given a number
        {"tags": [1, 2]},
    ],
)
def test_a_record_that_cannot_be_converted_raises_row_error(bad: dict[str, Any]) -> None:
    for dialect in (SQLITE, POSTGRES):
        with pytest.raises(RowError):
            row_values_for(dialect, **bad)


def test_a_record_missing_a_value_raises_row_error() -> None:
    short = cast(CallRecord, record()[:-3])  # no tags
    with pytest.raises(RowError, match="IndexError"):
        list(SpendStatements(SQLITE).insert([short]))


def test_insert_hands_back_each_records_values() -> None:
    statements = SpendStatements(SQLITE)
    records = [record(call_id=f"c{i}") for i in range(5)]
    into: list[Values] = []
    statements_made = list(statements.insert(records, into=into))  # chunks of 4 and 1
    assert [row[0] for row in into] == [f"c{i}" for i in range(5)]
    params = [value for _, chunk in statements_made for value in chunk]
    assert [value for row in into for value in row] == params


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
    records = [record(call_id=f"c{i}") for i in range(2 * CHUNK + 37)]
    found = list(statements.insert(records))
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


def stored(*records: CallRecord) -> list[Values]:
    into: list[Values] = []
    list(SpendStatements(SQLITE).insert(records, into=into))
    return into


def test_owner_sums_are_sorted_and_skip_free_or_ownerless_rows() -> None:
    rows = stored(
        record(token="b", cost=0.25),
        record(token="a", cost=0.5),
        record(token="b", cost=0.25),
        record(token=None, cost=1.0),
        record(token="c", cost=None),
        record(token="d", cost=0.0),
    )
    assert owner_sums(rows, "token") == [("a", 0.5), ("b", 0.5)]
    assert owner_sums(stored(record(user_id="u" * 300)), "user_id") == [("u" * 256, 0.5)]


def test_totals_update_keys_users_teams_then_upsert_end_users() -> None:
    rows = stored(record(), record(end_user=None), record(token=None, user_id=None, team_id=None))
    totals = SpendStatements(SQLITE).totals(rows)
    tables = [sql.replace("INSERT INTO", "INSERT").split()[1] for sql, _ in totals]
    assert tables == ["keys", "users", "teams", "end_users", "spend_rollups"]
    assert totals[0][1] == [(1.0, "ab" * 32)]
    assert totals[1][1] == [(1.0, "u")] and totals[2][1] == [(1.0, "t")]
    [(end_user, spend, blocked, metadata, created_at)] = totals[3][1]
    assert (end_user, spend, blocked, metadata) == ("alice", 1.0, False, "{}")
    assert created_at == sqlalchemy_bind("start_time", datetime.fromisoformat(created_at + "Z"))
    rollups = totals[4][1]  # the hourly and daily rollups of every row (tests/integration)
    assert {(period, dimension) for period, dimension, *_ in rollups} >= {
        ("hour", "all"),
        ("day", "key"),
    }
    assert SpendStatements(POSTGRES).totals([]) == []


def test_only_sqlite_and_postgres() -> None:
    with pytest.raises(ValueError, match="mysql"):
        SpendStatements(type("Dialect", (), {"name": "mysql"})())
