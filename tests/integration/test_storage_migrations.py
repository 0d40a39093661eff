"""Gateways starting at once on one fresh database all migrate it without error."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.pool import NullPool

from passgate.accounting.writer import SpendWriter
from passgate.call_record import CallRecord, call_record
from passgate.config import Settings
from passgate.exchange import Usage
from passgate.principal import Principal
from passgate.storage.db import create_engine, database_url, normalize_url
from passgate.storage.migrate import alembic_config, current_revision, head_revision, upgrade
from passgate.storage.models import Base
from tests.support.databases import fresh_postgres, sqlite_url
from tests.support.exchanges import exchange

# Each process imports everything first, then waits for the go signal on stdin, so the
# upgrades really start together.
UPGRADE = """
import asyncio, sys
from passgate.storage.migrate import upgrade
sys.stdin.readline()
asyncio.run(upgrade(sys.argv[1]))
print("ok")
"""


async def race(url: str, processes: int = 3) -> list[tuple[int, bytes]]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            UPGRADE,
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    results = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        results.append((proc.returncode or 0, out + err))
    return results


async def assert_migrated_once(url: str) -> None:
    assert await current_revision(url) == head_revision()
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT count(*) FROM alembic_version"))
            assert rows.scalar() == 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_concurrent_upgrades_on_postgres_all_succeed() -> None:
    async with fresh_postgres() as url:
        for code, output in await race(url):
            assert code == 0, output.decode(errors="replace")
        await assert_migrated_once(url)


async def test_concurrent_upgrades_on_sqlite_all_succeed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    for code, output in await race(url):
        assert code == 0, output.decode(errors="replace")
    await assert_migrated_once(url)


async def test_concurrent_upgrades_in_one_process(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    await asyncio.gather(upgrade(url), upgrade(url))
    await assert_migrated_once(url)


async def test_default_database_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    url = database_url(Settings(data_dir=data_dir, database_url=None))
    assert url.startswith("sqlite+aiosqlite:///") and data_dir.is_dir()
    await upgrade(url)
    assert (data_dir / "passgate.db").is_file()


def _upgrade_to(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


def _downgrade_to(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


def _schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def check_call_id_migration(url: str) -> None:
    """Rows written before 0003 keep their id; afterwards a request id may repeat."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0002")
            await conn.execute(
                text(
                    "INSERT INTO spend_logs (request_id, method, route, status, start_time) "
                    "VALUES ('r1', 'POST', '/mistral/v1/x', 200, CURRENT_TIMESTAMP)"
                )
            )
        await upgrade(url)
        async with engine.begin() as conn:
            old = (await conn.execute(text("SELECT call_id, request_id FROM spend_logs"))).all()
            assert [tuple(r) for r in old] == [("r1", "r1")]
            for call_id in ("c2", "c3"):  # the same client request id, twice
                await conn.execute(
                    text(
                        "INSERT INTO spend_logs (call_id, request_id, method, route, status, "
                        "start_time) VALUES (:c, 'r1', 'POST', '/x', 200, CURRENT_TIMESTAMP)"
                    ),
                    {"c": call_id},
                )
            count = await conn.scalar(text("SELECT count(*) FROM spend_logs"))
            assert count == 3
            assert await conn.run_sync(_schema_diff) == []
    finally:
        await engine.dispose()


async def test_spend_rows_move_to_call_ids_on_sqlite(tmp_path: Path) -> None:
    await check_call_id_migration(sqlite_url(tmp_path))


@pytest.mark.postgres
async def test_spend_rows_move_to_call_ids_on_postgres() -> None:
    async with fresh_postgres() as url:
        await check_call_id_migration(url)


def spend_record(when: datetime, token: str, cost: float) -> CallRecord:
    ex = exchange(start_time=when.timestamp(), start=0.0, cost=cost, request_id=token)
    ex.principal = Principal(kind="virtual", token=token * 32, key_alias=token)
    ex.end = 0.5
    ex.usage = Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
    return call_record(ex)


async def check_weekly_rollups_migration(url: str) -> None:
    """0005 fills in the weeks of rollups written before it, as the spend writer adds them."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    monday = datetime(2026, 3, 2, tzinfo=UTC)
    # a Sunday, the Monday after it, and a Wednesday: two weeks, three days
    at = [monday - timedelta(hours=1), monday + timedelta(hours=5), monday + timedelta(days=2)]
    try:
        # today's writer needs today's spend_logs: write at the head, then go back to 0004
        # (whose downgrade drops the weekly rollups) and up again
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "head")
        writer = SpendWriter(engine, batch_size=2, flush_interval=0.05)
        for i, when in enumerate(at):
            writer.enqueue(spend_record(when, f"k{i % 2}", cost=0.5 + i))
        await writer.stop()
        weeks = "SELECT dimension, start, value, requests, cost, total_tokens, latency_ms "
        weeks += "FROM spend_rollups WHERE period = 'week' ORDER BY dimension, start, value"
        async with engine.begin() as conn:
            written = [tuple(r) for r in await conn.execute(text(weeks))]
            await conn.run_sync(_downgrade_to, "0004")
            assert [tuple(r) for r in await conn.execute(text(weeks))] == []
        await upgrade(url)
        async with engine.begin() as conn:
            filled = [tuple(r) for r in await conn.execute(text(weeks))]
            assert await conn.run_sync(_schema_diff) == []
        assert len(written) == 2 * 7 + 1  # two weeks of every dimension; two keys in the 2nd
        assert filled == written
    finally:
        await engine.dispose()


async def test_weekly_rollups_are_filled_in_on_sqlite(tmp_path: Path) -> None:
    await check_weekly_rollups_migration(sqlite_url(tmp_path))


@pytest.mark.postgres
async def test_weekly_rollups_are_filled_in_on_postgres() -> None:
    async with fresh_postgres() as url:
        await check_weekly_rollups_migration(url)


async def check_key_deployments_migration(url: str) -> None:
    """Keys written before 0008 may reach every deployment; downgrading drops the column."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    deployments = "SELECT allowed_deployments FROM keys ORDER BY token"
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0007")
            await conn.execute(text("INSERT INTO keys (token) VALUES ('t-old')"))
        await upgrade(url)
        async with engine.begin() as conn:
            assert [_json_list(r[0]) for r in await conn.execute(text(deployments))] == [[]]
            await conn.execute(
                text("INSERT INTO keys (token, allowed_deployments) VALUES ('t-new', :d)"),
                {"d": '["eu-west", "us.east_2"]'},
            )
            rows = [_json_list(r[0]) for r in await conn.execute(text(deployments))]
            assert rows == [["eu-west", "us.east_2"], []]
            assert await conn.run_sync(_schema_diff) == []
            await conn.run_sync(_downgrade_to, "0007")
            columns = (await conn.execute(text("SELECT * FROM keys LIMIT 1"))).keys()
            assert "allowed_deployments" not in columns
            assert await conn.scalar(text("SELECT count(*) FROM keys")) == 2
        await upgrade(url)
        async with engine.begin() as conn:
            assert [_json_list(r[0]) for r in await conn.execute(text(deployments))] == [[], []]
    finally:
        await engine.dispose()


def _json_list(value: Any) -> Any:
    # a raw SELECT of a JSON column gives text on SQLite and a parsed value on PostgreSQL
    return orjson.loads(value) if isinstance(value, str) else value


async def test_keys_reach_every_deployment_after_0008_on_sqlite(tmp_path: Path) -> None:
    await check_key_deployments_migration(sqlite_url(tmp_path))


@pytest.mark.postgres
async def test_keys_reach_every_deployment_after_0008_on_postgres() -> None:
    async with fresh_postgres() as url:
        await check_key_deployments_migration(url)
