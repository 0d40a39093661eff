"""The batched spend writer against real SQLite and PostgreSQL databases.

Outages are real: SQLite is locked by another connection (``BEGIN EXCLUSIVE``);
PostgreSQL stops accepting connections to the test database and its sessions are
terminated. Waits poll the database with a generous deadline; nothing is timed.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
from sqlalchemy import Engine, event, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from passgate.accounting.rows import COLUMNS, row_from_record
from passgate.accounting.spend_queries import SpendFilter, logs_page
from passgate.accounting.spend_sql import CHUNK
from passgate.accounting.writer import SpendWriter
from passgate.call_record import CallRecord, call_record
from passgate.exchange import Exchange, Usage
from passgate.principal import MASTER, Principal
from passgate.storage.db import create_engine, session_factory, sqlite_file_twin
from passgate.storage.migrate import upgrade
from passgate.storage.models import EndUser, Key, SpendLog, Team, User
from tests.support.databases import fresh_postgres, sqlite_url
from tests.support.services import PG_DSN

KEYS = [
    Principal(
        kind="virtual",
        token=f"{i:064x}",
        key_alias=f"key-{i}",
        user_id=f"user-{i % 2}",
        team_id="team-a" if i < 2 else None,
    )
    for i in range(3)
]
END_USERS = ["alice", "bob", None]


@dataclass
class Database:
    """A migrated test database that can be taken down and brought back."""

    kind: str
    url: str
    engine: AsyncEngine
    down: Callable[[], Awaitable[None]]
    up: Callable[[], Awaitable[None]]

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(SpendLog)) or 0)

    async def wait_for_rows(self, expected: int) -> None:
        async with asyncio.timeout(20):
            while await self.count() < expected:
                await asyncio.sleep(0.02)


async def seed(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(User), [{"user_id": "user-0"}, {"user_id": "user-1"}])
        await conn.execute(insert(Team), [{"team_id": "team-a"}])
        await conn.execute(
            insert(Key),
            [
                {
                    "token": k.token,
                    "key_alias": k.key_alias,
                    "user_id": k.user_id,
                    "team_id": k.team_id,
                }
                for k in KEYS
            ],
        )
        # an end user with a budget set beforehand keeps it; its spend grows
        await conn.execute(insert(EndUser), [{"end_user_id": "alice", "max_budget": 5.0}])


def _short_busy_wait(dbapi_connection: Any, _record: Any) -> None:
    # fail fast on a lock (the gateway waits 10 s), so an outage shows in a retry
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=50")
    cursor.close()


def _impatient_twin(engine: AsyncEngine) -> Engine | None:
    """``sqlite_file_twin``, waiting on a lock as briefly as the test's own engine."""
    twin = sqlite_file_twin(engine)
    if twin is not None:
        event.listen(twin, "connect", _short_busy_wait)
    return twin


@asynccontextmanager
async def sqlite_database(directory: Path) -> AsyncIterator[Database]:
    url = sqlite_url(directory)
    await upgrade(url)
    engine = create_engine(url)

    event.listen(engine.sync_engine, "connect", _short_busy_wait)

    locker: list[sqlite3.Connection] = []

    async def down() -> None:
        conn = sqlite3.connect(str(make_url(url).database), isolation_level=None, timeout=10)
        conn.execute("BEGIN EXCLUSIVE")
        locker.append(conn)

    async def up() -> None:
        conn = locker.pop()
        conn.execute("ROLLBACK")
        conn.close()

    await seed(engine)
    try:
        yield Database("sqlite", url, engine, down, up)
    finally:
        while locker:
            await up()
        await engine.dispose()


class SharedPostgres:
    """One PostgreSQL database for the module, created on first use; tests empty it first."""

    def __init__(self, stack: AsyncExitStack) -> None:
        self._stack = stack
        self._url: str | None = None

    async def url(self) -> str:
        if self._url is None:
            self._url = await self._stack.enter_async_context(fresh_postgres())
            await upgrade(self._url)
        return self._url


@pytest.fixture(scope="module")
async def shared_postgres() -> AsyncIterator[SharedPostgres]:
    async with AsyncExitStack() as stack:
        yield SharedPostgres(stack)


@asynccontextmanager
async def postgres_database(url: str) -> AsyncIterator[Database]:
    engine = create_engine(url)
    name = make_url(url).database

    async def down() -> None:
        admin = await asyncpg.connect(PG_DSN)
        try:
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        finally:
            await admin.close()

    async def up() -> None:
        admin = await asyncpg.connect(PG_DSN)
        try:
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        finally:
            await admin.close()

    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE spend_logs, keys, users, teams, end_users"))
    await seed(engine)
    try:
        yield Database("postgres", url, engine, down, up)
    finally:
        await up()
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def db(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    shared_postgres: SharedPostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        # the writer's blocking twin (SQLite only) must fail fast on a lock too
        monkeypatch.setattr("passgate.accounting.writer.sqlite_file_twin", _impatient_twin)
        async with sqlite_database(tmp_path) as database:
            yield database
    else:
        async with postgres_database(await shared_postgres.url()) as database:
            yield database


def call(number: int, cost: float | None = 0.001, request_id: str | None = None) -> Exchange:
    """A finished call by one of three keys (or the master key) for one of three end users.

    The same ``number`` is the same call (as when a batch is re-sent); ``request_id`` is
    the client's id, which clients may repeat across different calls.
    """
    now = time.perf_counter()
    ex = Exchange(
        call_id=f"call-{number}",
        request_id=request_id or f"req-{number}",
        method="POST",
        route="/mistral/v1/chat/completions",
        upstream_path="/v1/chat/completions",
        provider="mistral",
        start_time=time.time(),
        start=now,
        principal=KEYS[number % 3] if number % 4 else MASTER,
        end_user=END_USERS[number % 3],
        model="mistral-small-latest",
        status=200,
        first_byte=now + 0.01,
        end=now + 0.02,
        usage=Usage(prompt_tokens=10, completion_tokens=20, total_tokens=30),
        cost=cost,
        tags=["batch"],
    )
    return ex


async def assert_totals_match_rows(db: Database) -> None:
    """Every running total equals the sum of its rows' costs."""
    async with db.engine.connect() as conn:
        for model, id_column, row_column in (
            (Key, Key.token, SpendLog.token),
            (User, User.user_id, SpendLog.user_id),
            (Team, Team.team_id, SpendLog.team_id),
            (EndUser, EndUser.end_user_id, SpendLog.end_user),
        ):
            sums = dict(
                (
                    await conn.execute(
                        select(row_column, func.sum(SpendLog.cost))
                        .where(row_column.is_not(None))
                        .group_by(row_column)
                    )
                ).all()
            )
            totals = dict((await conn.execute(select(id_column, model.spend))).all())
            for owner, total in totals.items():
                assert total == pytest.approx(sums.get(owner) or 0.0, abs=1e-12), (model, owner)
            assert set(sums) <= set(totals), model


async def test_a_full_batch_is_written_without_waiting_for_the_interval(db: Database) -> None:
    writer = SpendWriter(db.engine, batch_size=10, flush_interval=60.0)
    writer.start()
    for number in range(10):
        await writer.finished(call(number))
    await db.wait_for_rows(10)
    await writer.stop()
    assert (writer.written, writer.dropped, writer.pending) == (10, 0, 0)


async def test_rows_are_written_after_the_flush_interval(db: Database) -> None:
    writer = SpendWriter(db.engine, batch_size=1000, flush_interval=0.05)
    writer.start()
    for number in range(3):
        await writer.finished(call(number))
    await db.wait_for_rows(3)
    await writer.stop()


async def test_stop_flushes_every_queued_row(db: Database) -> None:
    writer = SpendWriter(db.engine, batch_size=100, flush_interval=60.0)
    writer.start()
    for number in range(250):
        await writer.finished(call(number))
    await writer.stop()
    assert await db.count() == 250
    await assert_totals_match_rows(db)


async def test_calls_repeating_a_client_request_id_are_each_stored_and_billed(
    db: Database,
) -> None:
    writer = SpendWriter(db.engine, batch_size=50)
    for number in range(6):  # six different calls, one x-request-id
        await writer.finished(call(number, request_id="same-id"))
    await writer.stop()
    assert await db.count() == 6
    assert (writer.written, writer.duplicates) == (6, 0)
    await assert_totals_match_rows(db)


async def test_each_row_lands_exactly_once(db: Database) -> None:
    notified: list[str] = []
    writer = SpendWriter(db.engine, batch_size=7, flush_interval=0.05)
    writer.add_listener(lambda rows: notified.extend(row["request_id"] for row in rows))
    writer.start()
    for number in range(30):
        await writer.finished(call(number % 20))  # ten ids twice, some in one batch
    await writer.flush()
    await writer.stop()
    again = SpendWriter(db.engine, batch_size=50)
    for number in range(25):  # a second writer (another process) re-sends 20 known ids
        await again.finished(call(number))
    await again.stop()
    assert await db.count() == 25
    assert sorted(notified) == sorted(f"req-{n}" for n in range(20))
    assert (writer.written, writer.duplicates) == (20, 10)
    assert (again.written, again.duplicates) == (5, 20)
    await assert_totals_match_rows(db)
    async with db.engine.connect() as conn:
        alice = await conn.scalar(select(EndUser.spend).where(EndUser.end_user_id == "alice"))
        budget = await conn.scalar(select(EndUser.max_budget).where(EndUser.end_user_id == "alice"))
        bob = await conn.scalar(select(EndUser.spend).where(EndUser.end_user_id == "bob"))
    expected = sum(0.001 for n in range(25) if END_USERS[n % 3] == "alice")
    assert alice == pytest.approx(expected)
    assert budget == 5.0
    assert bob == pytest.approx(sum(0.001 for n in range(25) if END_USERS[n % 3] == "bob"))


async def test_rows_survive_a_database_outage(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = SpendWriter(db.engine, batch_size=50, flush_interval=0.02, max_backoff=0.2)
    writer.start()
    await db.down()
    try:
        for number in range(200):
            await writer.finished(call(number))  # never waits on the database
        async with asyncio.timeout(20):
            while writer.retries < 3:
                await asyncio.sleep(0.02)
        assert writer.written == 0
    finally:
        await db.up()
    async with asyncio.timeout(30):
        await writer.flush()
    await writer.stop()
    assert (await db.count(), writer.written, writer.dropped) == (200, 200, 0)
    await assert_totals_match_rows(db)
    warnings = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert warnings
    for record in caplog.records:  # no key hash in any log line
        assert not any(str(k.token) in record.getMessage() for k in KEYS)


async def test_stop_gives_up_after_its_timeout_when_the_database_stays_down(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = SpendWriter(db.engine, batch_size=10, max_backoff=0.05, stop_timeout=0.5)
    writer.start()
    for number in range(5):
        await writer.finished(call(number))
    await db.down()
    try:
        with caplog.at_level(logging.ERROR, "passgate.accounting"):
            await writer.stop()
    finally:
        await db.up()
    assert any("5 rows unwritten" in r.getMessage() for r in caplog.records)
    await writer.finished(call(99))  # after stop: refused loudly, not silently
    assert writer.dropped == 1


async def test_a_full_queue_counts_and_logs_what_it_drops(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = SpendWriter(db.engine, queue_max=3, batch_size=100)
    with caplog.at_level(logging.ERROR, "passgate.accounting"):
        for number in range(5):
            await writer.finished(call(number))
    assert (writer.dropped, writer.pending) == (2, 3)
    assert any("DROPPED" in record.getMessage() for record in caplog.records)
    await writer.stop()
    assert await db.count() == 3


async def test_a_row_the_database_refuses_does_not_hold_back_the_others(db: Database) -> None:
    writer = SpendWriter(db.engine, batch_size=100)
    records = [record(call(number)) for number in range(9)]
    records[4] = record(call(4), status=None)  # NOT NULL: refused by both databases
    for found in records:
        writer.enqueue(found)
    await writer.stop()
    assert (writer.written, writer.rejected) == (8, 1)
    assert await db.count() == 8
    await assert_totals_match_rows(db)


async def test_unpriced_calls_are_stored_with_a_null_cost(db: Database) -> None:
    writer = SpendWriter(db.engine)
    await writer.finished(call(1, cost=None))
    await writer.finished(call(2, cost=0.5))
    await writer.stop()
    async with db.engine.connect() as conn:
        costs = dict((await conn.execute(select(SpendLog.request_id, SpendLog.cost))).all())
        key_spend = await conn.scalar(select(Key.spend).where(Key.token == KEYS[2].token))
    assert costs == {"req-1": None, "req-2": 0.5}
    assert key_spend == pytest.approx(0.5)


async def test_the_stored_row_matches_the_exchange(db: Database) -> None:
    ex = call(7)
    ex.interrupted = True
    ex.error = "client disconnected"
    ex.upstream_request_id = "up-123"
    writer = SpendWriter(db.engine)
    await writer.finished(ex)
    await writer.stop()
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(SpendLog))).one()._mapping
    assert row["token"] == KEYS[1].token
    assert (row["key_alias"], row["user_id"], row["team_id"]) == ("key-1", "user-1", "team-a")
    assert (row["end_user"], row["model"], row["status"]) == ("bob", "mistral-small-latest", 200)
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (10, 20, 30)
    assert (row["interrupted"], row["error"], row["upstream_request_id"]) == (
        True,
        "client disconnected",
        "up-123",
    )
    assert row["tags"] == ["batch"]
    assert row["latency_ms"] == pytest.approx(20.0, abs=1e-6)
    assert row["ttfb_ms"] == pytest.approx(10.0, abs=1e-6)
    assert row["start_time"].timestamp() == pytest.approx(ex.start_time, abs=1e-3)
    assert (row["end_time"] - row["start_time"]).total_seconds() == pytest.approx(0.02, abs=1e-3)


# --- the driver-level fast path stores what SQLAlchemy's column types store ---------------


def record(ex: Exchange, **fields: Any) -> CallRecord:
    """The call record of ``ex``, with ``fields`` (by name) replaced."""
    return call_record(ex)._replace(**fields)


def varied_records() -> list[CallRecord]:
    """Records that exercise every stored form: microseconds, None, unicode, NULs, tags."""
    full = call(1)
    full.start_time = 1_700_000_000.123456
    full.model = "mistral-ünïcødé-模型-🚀"
    full.end_user = "ålice 🚀"
    full.tags = ["team:é", "🚀", "x\x00y", "", "z" * 300]
    full.error = "boom\x00 ü 💥"
    full.upstream_request_id = "up-\x00-1"
    full.usage = Usage(
        prompt_tokens=1,
        completion_tokens=2,
        cached_tokens=3,
        total_tokens=6,
        pages=4,
        annotated_pages=5,
        audio_seconds=1.0 / 3.0,
        characters=7,
    )
    full.cost = 0.1 + 0.2  # a float that is not short in decimal
    full.stream = True
    full.interrupted = True
    empty = call(2, cost=None)
    empty.principal = None
    empty.end_user = None
    empty.usage = None
    empty.first_byte = None
    empty.end = None
    empty.tags = []
    empty.start_time = 1_700_000_001.0  # microsecond 0: still written with six digits
    # a time whose microseconds round up into the next second, as fromtimestamp rounds them
    rounded_up = record(call(3), start_time=1_700_000_002.9999996)
    return [call_record(full), call_record(empty), rounded_up]


async def raw_rows(db: Database) -> dict[str, tuple[Any, ...]]:
    """Every stored spend row as the database holds it (JSON as text), by call id."""
    columns = ", ".join(
        f"{name}::text" if db.kind == "postgres" and name == "tags" else name for name in COLUMNS
    )
    async with db.engine.connect() as conn:
        result = await conn.exec_driver_sql(f"SELECT {columns} FROM spend_logs")  # noqa: S608
        return {row[0]: tuple(row[1:]) for row in result}


async def test_stored_values_are_those_sqlalchemy_types_store(db: Database) -> None:
    records = varied_records()
    writer = SpendWriter(db.engine)
    for found in records:
        writer.enqueue(found)
    await writer.stop()
    assert writer.written == len(records)
    rows = [row_from_record(found) for found in records]
    # the same rows through SQLAlchemy's compiled INSERT and its type processors
    reference = [{**row, "call_id": "ref-" + row["call_id"]} for row in rows]
    async with db.engine.begin() as conn:
        await conn.execute(insert(SpendLog), reference)
    stored = await raw_rows(db)
    for row in rows:
        assert stored[row["call_id"]] == stored["ref-" + row["call_id"]], row["call_id"]
    if db.kind == "sqlite":
        start = stored[rows[1]["call_id"]][COLUMNS.index("start_time") - 1]
        assert start == "2023-11-14 22:13:21.000000"


async def test_values_read_back_identical_through_the_orm(db: Database) -> None:
    records = varied_records()
    writer = SpendWriter(db.engine)
    for found in records:
        writer.enqueue(found)
    await writer.stop()
    rows = [row_from_record(found) for found in records]
    async with session_factory(db.engine)() as session:
        logs = {log.call_id: log for log in (await session.scalars(select(SpendLog))).all()}
    assert set(logs) == {row["call_id"] for row in rows}
    for row in rows:
        log = logs[row["call_id"]]
        for name in COLUMNS:
            expected = row[name]
            if isinstance(expected, datetime):
                expected = expected.astimezone(UTC)
            assert getattr(log, name) == expected, name
    full, empty = logs[rows[0]["call_id"]], logs[rows[1]["call_id"]]
    assert full.start_time == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert full.model == "mistral-ünïcødé-模型-🚀" and full.end_user == "ålice 🚀"
    assert full.tags == ["team:é", "🚀", "xy", "z" * 256]
    assert (full.error, full.upstream_request_id) == ("boom ü 💥", "up--1")
    assert full.audio_seconds == 1.0 / 3.0 and full.cost == 0.1 + 0.2
    assert empty.start_time == datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC)
    assert (empty.token, empty.end_time, empty.cost, empty.prompt_tokens) == (None,) * 4
    assert empty.tags == []
    # range filters compare stored values with bound ones: both must have the same form
    flt = SpendFilter(start=full.start_time, end=full.start_time + timedelta(microseconds=1))
    async with session_factory(db.engine)() as session:
        page, total = await logs_page(session, flt, 1, 10)
    assert total == 1 and page[0]["call_id"] == full.call_id


async def test_inserts_use_a_few_fixed_statements_of_at_most_a_chunk(db: Database) -> None:
    seen: list[tuple[str, int]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_args: Any) -> None:
        if statement.startswith("INSERT INTO spend_logs"):
            seen.append((statement, len(params)))

    number = 0
    for size in (1, 3, 5, 7, 12, 30, 63, 99, 100, 101, 250, 500, 77, 1000):
        writer = SpendWriter(db.engine, batch_size=size)
        event.listen(writer.statement_engine, "before_cursor_execute", capture)
        try:
            for _ in range(size):
                number += 1
                await writer.finished(call(number))
            await writer.stop()
        finally:
            event.remove(writer.statement_engine, "before_cursor_execute", capture)
        assert writer.written == size
    assert await db.count() == number
    shapes = {CHUNK} | {1 << bit for bit in range(CHUNK.bit_length() - 1)}
    assert len({statement for statement, _ in seen}) <= len(shapes)
    sizes = {count // len(COLUMNS) for _, count in seen}
    assert sizes <= shapes  # never more than a chunk
    assert sum(count for _, count in seen) == number * len(COLUMNS)


async def test_a_new_end_user_is_created_as_the_model_creates_it(db: Database) -> None:
    writer = SpendWriter(db.engine)
    before = datetime.now(UTC)
    await writer.finished(call(1))  # end user "bob": not in the database yet
    await writer.stop()
    async with session_factory(db.engine)() as session:
        bob = await session.get(EndUser, "bob")
    assert bob is not None
    assert bob.spend == pytest.approx(0.001)
    assert (bob.blocked, bob.metadata_, bob.max_budget) == (False, {}, None)
    assert before - timedelta(seconds=1) <= bob.created_at <= datetime.now(UTC)


async def test_rows_that_cannot_be_stored_are_refused_alone(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    notified: list[dict[str, Any]] = []
    writer = SpendWriter(db.engine, batch_size=100, max_backoff=0.05, stop_timeout=10)
    writer.add_listener(notified.extend)
    records = [record(call(number)) for number in range(6)]
    records[1] = record(call(1), start_time="2025-01-01")  # not seconds since the epoch
    records[3] = record(call(3), tags=cast(list[str], 5))  # a malformed record: tags not a list
    huge = 2**40  # over PostgreSQL's integer: refused there, stored by SQLite
    records[4] = record(call(4), total_tokens=huge)
    for found in records:
        writer.enqueue(found)
    with caplog.at_level(logging.ERROR, "passgate.accounting"):
        await writer.stop()
    refused = 3 if db.kind == "postgres" else 2
    assert (writer.written, writer.rejected, writer.retries) == (6 - refused, refused, 0)
    assert await db.count() == 6 - refused
    assert len(notified) == 6 - refused
    assert all("token" not in row for row in notified)  # listeners never see the key hash
    await assert_totals_match_rows(db)
    assert sum("refused by the database" in r.getMessage() for r in caplog.records) == refused
