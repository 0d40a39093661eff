"""Hourly rollups kept by the spend writer, and retention, on real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from passgate.accounting.retention import Retention
from passgate.accounting.rollups import route_family, week_start
from passgate.accounting.writer import SpendWriter
from passgate.call_record import CallRecord, call_record
from passgate.exchange import Usage
from passgate.principal import Principal
from passgate.storage.models import SpendLog, SpendRollup
from passgate.ui.queries import Window, custom_plans, top
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
) -> CallRecord:
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
        rows = (await conn.execute(select(SpendRollup.__table__))).mappings().all()
    return {(r["period"], r["dimension"], r["start"], r["value"]): dict(r) for r in rows}


async def write(engine: AsyncEngine, records: list[CallRecord]) -> None:
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
    day = hour.replace(hour=0)
    alice = found["hour", "key", hour, ALICE.token]
    assert (alice["requests"], alice["errors"], alice["priced_requests"]) == (3, 1, 2)
    assert alice["cost"] == pytest.approx(0.75)
    assert alice["prompt_tokens"] == 25 and alice["total_tokens"] == 28
    assert alice["latency_ms"] == pytest.approx(750.0)
    assert found["hour", "key", hour + timedelta(hours=1), ALICE.token]["requests"] == 1
    assert found["day", "key", day, ALICE.token]["requests"] == 4
    assert found["hour", "user", hour, "u1"]["requests"] == 3
    assert found["hour", "team", hour, "t1"]["cost"] == pytest.approx(0.75)
    assert found["hour", "end_user", hour, "c1"]["requests"] == 3
    assert found["hour", "route", hour, "/mistral/v1/files"]["cost"] == pytest.approx(2.0)
    everyone = found["hour", "all", hour, ""]
    assert (everyone["requests"], everyone["errors"]) == (5, 2)
    assert everyone["cost"] == pytest.approx(2.75)
    assert found["hour", "key", hour, ""]["requests"] == 1  # the call without a key
    assert found["day", "model", day, "mistral-small-latest"]["requests"] == 6
    assert found["week", "key", week_start(day), ALICE.token]["cost"] == pytest.approx(1.75)
    # the totals of the rollups are the totals of the rows
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(func.count(), func.sum(SpendLog.cost)).select_from(SpendLog))
        ).one()
    for period in ("hour", "day", "week"):
        for dimension in ("all", "key", "user", "team", "end_user", "model", "route"):
            same = [r for k, r in found.items() if k[:2] == (period, dimension)]
            assert sum(r["requests"] for r in same) == rows[0] == 6
            assert sum(r["cost"] for r in same) == pytest.approx(rows[1])


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
            insert(SpendRollup),
            [
                {
                    "period": "day",
                    "dimension": "all",
                    "start": ancient + timedelta(days=h),
                    "value": "",
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
    # 7 rows; their hourly rollups (2 hours x 7 dimensions); the 3 ancient daily rollups
    assert await retention.run_once() == (7, 14 + 3)
    async with engine.connect() as conn:
        left = await conn.scalar(select(func.count()).select_from(SpendLog))
    assert left == 2
    found = await rollups(engine)
    cutoff = now - timedelta(days=30)
    assert not [k for k in found if k[0] == "hour" and k[2] < cutoff]
    old_day = (now - timedelta(days=31)).replace(hour=0)
    assert found["day", "all", old_day, ""]["requests"] == 7  # the charts keep their history
    assert not [k for k in found if k[2] < now - timedelta(days=400)]
    assert await retention.run_once() == (0, 0)


async def test_retention_off_keeps_everything(engine: AsyncEngine) -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    await write(engine, [record(ALICE, (now - timedelta(days=90)).timestamp(), cost=0.1)])
    retention = Retention(engine, log_days=0, rollup_days=0, clock=lambda: now)
    await retention.start()  # nothing to do: no task
    await retention.stop()
    assert await retention.run_once() == (0, 0)


async def test_top_over_weeks_and_days_agrees_with_the_rows(engine: AsyncEngine) -> None:
    # 23 days from a Thursday: three days, two whole UTC weeks, six days; every key calls
    # on days of its own, so a week or an edge day read twice or missed changes the ranking
    start = datetime(2026, 3, 5, tzinfo=UTC)
    window = Window(start, start + timedelta(days=23))
    assert [p for p, _, _ in window.spans()] == ["week", "day", "day"]
    who = [
        Principal(kind="virtual", token=f"{i:x}" * 64, key_alias=f"k{i}", user_id=f"u{i % 3}")
        for i in range(6)
    ]
    records = [
        record(
            who[(day * 5 + n) % 6],
            (start + timedelta(days=day, hours=n)).timestamp(),
            cost=0.01 * (1 + (day * 7 + n) % 11),
        )
        for day in range(-2, 25)
        for n in range(3)
    ]
    await write(engine, records)
    c = SpendLog.__table__.c
    for group, column in (("key", c.token), ("user", c.user_id), ("model", c.model)):
        expected = (
            select(column, func.count(), func.sum(c.cost))
            .where(c.start_time >= window.start, c.start_time < window.end)
            .group_by(column)
            .order_by(func.sum(c.cost).desc(), func.count().desc())
        )
        async with engine.connect() as conn:
            rows = [
                (name, count, pytest.approx(cost))
                for name, count, cost in await conn.execute(expected)
            ]
        async with AsyncSession(engine) as session:
            found = await top(session, window, group, limit=20)
        assert [(r["name"], r["requests"], r["cost"]) for r in found] == rows


@pytest.mark.postgres
async def test_ui_reads_on_postgres_plan_for_their_parameters_in_their_transaction() -> None:
    names = ("plan_cache_mode", "jit", "max_parallel_workers_per_gather")
    async with (
        fresh_postgres() as url,
        migrated_engine(url) as engine,
        AsyncSession(engine) as session,
    ):
        before = [await session.scalar(text(f"SHOW {name}")) for name in names]
        await session.commit()
        await custom_plans(session)
        during = [await session.scalar(text(f"SHOW {name}")) for name in names]
        await session.commit()
        after = [await session.scalar(text(f"SHOW {name}")) for name in names]
    assert during == ["force_custom_plan", "off", "0"]
    assert after == before != during  # the pooled connection is left as it was
