"""Budgets read from and reset in real SQLite and PostgreSQL databases."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from passgate.accounting.pricing import load_catalogs
from passgate.config import Settings
from passgate.errors import GatewayError
from passgate.exchange import Exchange
from passgate.limits.guard import TICKET
from passgate.limits.runtime import build_limits, limits_warning
from passgate.limits.store import SqlBudgetStore, to_datetime
from passgate.principal import Principal
from passgate.storage.db import session_factory
from passgate.storage.models import EndUser, Key, Team, User
from tests.support.databases import fresh_postgres, migrated_engine, sqlite_url

T0 = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if request.param == "sqlite":
        async with migrated_engine(sqlite_url(tmp_path)) as engine:
            yield session_factory(engine)
        return
    database: AbstractAsyncContextManager[str] = fresh_postgres()
    async with database as url, migrated_engine(url) as engine:
        yield session_factory(engine)


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def test_load_reads_each_kind_of_budget(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        session.add_all(
            [
                Key(
                    token="a" * 64,
                    max_budget=5.0,
                    budget_duration="1d",
                    spend=1.5,
                    budget_reset_at=at(T0),
                ),
                User(user_id="u1", max_budget=2.0, spend=0.25),
                Team(team_id="t1", budget_duration="7d"),
                EndUser(end_user_id="alice", max_budget=0.5, spend=0.5),
            ]
        )
    store = SqlBudgetStore(sessions)
    key = await store.load("key", "a" * 64)
    assert key is not None
    assert (key.max_budget, key.budget_duration, key.spend, key.budget_reset_at) == (
        5.0,
        "1d",
        1.5,
        T0,
    )
    user = await store.load("user", "u1")
    assert user is not None and (user.max_budget, user.spend) == (2.0, 0.25)
    team = await store.load("team", "t1")
    assert team is not None and (team.max_budget, team.budget_duration) == (None, "7d")
    alice = await store.load("end_user", "alice")
    assert alice is not None and alice.spend == 0.5
    assert await store.load("user", "nobody") is None


async def test_reset_due_starts_new_periods_on_the_grid(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        session.add_all(
            [
                User(
                    user_id="due",
                    max_budget=1.0,
                    budget_duration="1h",
                    spend=0.9,
                    budget_reset_at=at(T0 - 10),
                ),
                User(
                    user_id="later",
                    max_budget=1.0,
                    budget_duration="1h",
                    spend=0.4,
                    budget_reset_at=at(T0 + 10),
                ),
                Team(team_id="unset", max_budget=1.0, budget_duration="30s", spend=0.3),
                EndUser(end_user_id="lifetime", max_budget=1.0, spend=0.7),
                Key(
                    token="b" * 64,
                    max_budget=1.0,
                    budget_duration="1m",
                    spend=0.6,
                    budget_reset_at=at(T0 - 125),
                ),
            ]
        )
    store = SqlBudgetStore(sessions)
    assert await store.reset_due(T0) == 3
    assert await store.reset_due(T0) == 0  # nothing due any more: a second instance does nothing
    due, later = await store.load("user", "due"), await store.load("user", "later")
    assert due is not None and (due.spend, due.budget_reset_at) == (0.0, T0 + 3600 - 10)
    assert later is not None and (later.spend, later.budget_reset_at) == (0.4, T0 + 10)
    unset = await store.load("team", "unset")
    assert unset is not None and (unset.spend, unset.budget_reset_at) == (0.3, T0 + 30)
    lifetime = await store.load("end_user", "lifetime")
    assert lifetime is not None and (lifetime.spend, lifetime.budget_reset_at) == (0.7, None)
    key = await store.load("key", "b" * 64)
    assert key is not None and (key.spend, key.budget_reset_at) == (0.0, T0 + 55)


async def test_counters_start_from_the_database_spend(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    token = "c" * 64
    async with sessions.begin() as session:
        session.add_all(
            [
                Key(token=token, key_alias="spent", max_budget=1.0, spend=1.0),
                EndUser(end_user_id="bob", max_budget=1.0, spend=0.0),
            ]
        )
    settings = Settings(budget_estimate_usd=0.01, redis_url=None)
    limits = build_limits(settings, sessions, load_catalogs())
    await limits.start()
    try:
        principal = Principal(kind="virtual", token=token, key_alias="spent", max_budget=1.0)
        ex = Exchange(
            "r1",
            "POST",
            "/mistral/v1/chat/completions",
            "/v1/chat/completions",
            "mistral",
            time.time(),
            time.perf_counter(),
            principal=principal,
        )
        with pytest.raises(GatewayError) as refused:
            await limits.guard.admit(ex)
        assert refused.value.code == "budget_exceeded"
        assert "spent $1 " in refused.value.message
        ex2 = Exchange(
            "r2",
            "POST",
            "/mistral/v1/chat/completions",
            "/v1/chat/completions",
            "mistral",
            time.time(),
            time.perf_counter(),
            principal=None,
            end_user="bob",
        )
        await limits.guard.admit(ex2)
        assert TICKET.get(ex2) is not None
        await limits.guard.cleanup(ex2)
    finally:
        await limits.stop()


def test_limits_warning_only_when_workers_were_told_to_keep_their_own_counters() -> None:
    assert limits_warning(Settings(workers=4, redis_url=None)) is None  # the limits process
    warning = limits_warning(Settings(workers=4, redis_url=None, limits_process=False))
    assert warning is not None and "per worker" in warning
    assert limits_warning(Settings(workers=1, redis_url=None, limits_process=False)) is None
    redis = "redis://127.0.0.1:6379/0"
    assert limits_warning(Settings(workers=4, redis_url=redis, limits_process=False)) is None


def test_to_datetime_is_utc() -> None:
    assert to_datetime(T0) == at(T0)
