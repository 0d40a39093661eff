"""Hourly rollups kept by the spend writer, and retention, on real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from passgate.accounting.retention import Retention
from passgate.accounting.rollups import route_family
from passgate.accounting.rows import Record, call_record
from passgate.accounting.writer import SpendWriter
from passgate.auth.principal import Principal
from passgate.exchange import Usage
from passgate.storage.models import SpendHourly, SpendLog
from tests.support.databases import fresh_postgres, migrated_engine, sqlite_url
from tests.support.exchanges import exchange

HOUR = 1_700_000_000 // 3600 * 3600  # the start of an hour, in epoch seconds
ALICE = Principal(kind="virtual", token="a" * 64, key_alias="alice", user_id="u1", team_id="t1")
BOB = Principal(kind="virtual", token="b" * 64, key_alias="bob")


def record(
    who: Principal | None,
    at: float,
    *,
    cost: float | None,
    status: int = 200,
    route: str = "/mistral/v1/chat/completions",
    tokens: int = 10,
    model: str = "mistral-small-latest",
    end_user: str | None = None,
) -> Record:
    ex = exchange(route, start_time=at, start=0.0, principal=who, status=status, cost=cost)
    ex.model = model
    ex.end = 0.25
    ex.end_user = end_user
    ex.usage = Usage(prompt_tokens=tokens, completion_tokens=1, total_tokens=tokens + 1)
    return call_record(ex)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        async with migrated_engine(sqlite_url(tmp_path)) as found:
            yield found
    else:
        async with fresh_postgres() as url, migrated_engine(url) as found:
            yield found


async def rollups(engine: AsyncEngine) -> dict[tuple[Any, ...], dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(SpendHourly.__table__))).mappings().all()
    return {
        (r["hour"], r["token"], r["end_user"], r["model"], r["route_family"]): dict(r) for r in rows
    }


async def write(engine: AsyncEngine, records: list[Record]) -> None:
    writer = SpendWriter(engine, batch_size=4, flush_interval=0.05)
    for item in records:
        writer.enqueue(item)
    await writer.stop()


async def test_rollups_add_up_the_rows_stored_in_the_same_batch(engine: AsyncEngine) -> None:
    records = [
        record(ALICE, HOUR + 10, cost=0.5, end_user="c1"),
        record(ALICE, HOUR + 20, cost=0.25, end_user="c1", tokens=5),
        record(ALICE, HOUR + 30, cost=None, status=502, end_user="c1"),
        record(ALICE, HOUR + 3600 + 5, cost=1.0, end_user="c1"),
        record(BOB, HOUR + 40, cost=2.0, route="/mistral/v1/files/f-123/content"),
        record(None, HOUR + 50, cost=None, status=401),
    ]
    await write(engine, records)
    await write(engine, records[:3])  # sent again: stored once, counted once
    found = await rollups(engine)
    hour = datetime.fromtimestamp(HOUR, UTC)
    chat = "/mistral/v1/chat/completions"
    alice = found[hour, ALICE.token, "c1", "mistral-small-latest", chat]
    assert (alice["requests"], alice["errors"], alice["priced_requests"]) == (3, 1, 2)
    assert alice["cost"] == pytest.approx(0.75)
    assert alice["prompt_tokens"] == 25 and alice["total_tokens"] == 28
    assert (alice["user_id"], alice["team_id"]) == ("u1", "t1")
    assert alice["latency_ms"] == pytest.approx(750.0)
    later = found[hour + timedelta(hours=1), ALICE.token, "c1", "mistral-small-latest", chat]
    assert later["requests"] == 1 and later["cost"] == pytest.approx(1.0)
    bob = found[hour, BOB.token, "", "mistral-small-latest", "/mistral/v1/files"]
    assert bob["requests"] == 1 and bob["cost"] == pytest.approx(2.0)
    anonymous = found[hour, "", "", "mistral-small-latest", chat]
    assert (anonymous["requests"], anonymous["errors"], anonymous["cost"]) == (1, 1, 0.0)
    assert len(found) == 4
    # the totals of the rollups are the totals of the rows
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(func.count(), func.sum(SpendLog.cost)).select_from(SpendLog))
        ).one()
    assert sum(r["requests"] for r in found.values()) == rows[0] == 6
    assert sum(r["cost"] for r in found.values()) == pytest.approx(rows[1])


def test_route_family_drops_ids() -> None:
    assert route_family("/mistral/v1/chat/completions") == "/mistral/v1/chat/completions"
    assert route_family("/mistral/v1/files/abc-123/content") == "/mistral/v1/files"
    assert route_family("/mistral/v1/fine_tuning/jobs/5e1f") == "/mistral/v1/fine_tuning/jobs"
    assert route_family("/mistral/v1/models/mistral-small-2501") == "/mistral/v1/models"
    assert route_family("/mistral/v1/batch/jobs?page=2") == "/mistral/v1/batch/jobs"
    assert route_family(None) == ""


async def test_retention_deletes_old_rows_in_batches_and_keeps_recent_ones(
    engine: AsyncEngine,
) -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    old = [
        record(ALICE, (now - timedelta(days=31, minutes=i)).timestamp(), cost=0.1) for i in range(7)
    ]
    new = [
        record(ALICE, (now - timedelta(days=29, minutes=i)).timestamp(), cost=0.1) for i in range(2)
    ]
    await write(engine, old + new)
    ancient = now - timedelta(days=500)
    async with engine.begin() as conn:
        await conn.execute(
            insert(SpendHourly),
            [
                {
                    "hour": ancient + timedelta(hours=h),
                    "token": "",
                    "user_id": "",
                    "team_id": "",
                    "end_user": "",
                    "model": "m",
                    "route_family": "/r",
                    **dict.fromkeys(("requests", "errors", "priced_requests"), 1),
                    "cost": 1.0,
                    **dict.fromkeys(
                        (
                            "prompt_tokens",
                            "completion_tokens",
                            "cached_tokens",
                            "total_tokens",
                            "pages",
                            "annotated_pages",
                            "characters",
                        ),
                        0,
                    ),
                    "audio_seconds": 0.0,
                    "latency_ms": 0.0,
                }
                for h in range(3)
            ],
        )
    retention = Retention(engine, log_days=30, rollup_days=400, batch_size=3, clock=lambda: now)
    assert await retention.run_once() == (7, 3)
    async with engine.connect() as conn:
        left = await conn.scalar(select(func.count()).select_from(SpendLog))
        kept = await conn.scalar(select(func.count()).select_from(SpendHourly))
    assert left == 2
    assert kept and kept > 0  # the rollups of the deleted rows stay: they are younger than 400 days
    assert await retention.run_once() == (0, 0)


async def test_retention_off_keeps_everything(engine: AsyncEngine) -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    await write(engine, [record(ALICE, (now - timedelta(days=90)).timestamp(), cost=0.1)])
    retention = Retention(engine, log_days=0, rollup_days=0, clock=lambda: now)
    await retention.start()  # nothing to do: no task
    await retention.stop()
    assert await retention.run_once() == (0, 0)
