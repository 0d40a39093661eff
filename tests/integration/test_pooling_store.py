"""Resource homes on both databases, and deployment states shared through a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from passgate.limits.redis_backend import redis_client
from passgate.pooling.resource_homes import StoredResourceHomes
from passgate.pooling.shared_health import SharedHealth, decode, encode
from passgate.providers.base import Provider
from passgate.providers.mistral import MistralSpec
from passgate.proxy.deployments import (
    KEY_REFUSED,
    RATE_LIMITED,
    Deployment,
    DeploymentPool,
    Health,
)
from passgate.storage.db import session_factory
from passgate.storage.models import ResourceHome
from tests.support.databases import fresh_postgres, migrated_engine, sqlite_url
from tests.support.services import REDIS_URL, require_redis


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        async with migrated_engine(sqlite_url(tmp_path)) as found:
            yield found
        return
    database: AbstractAsyncContextManager[str] = fresh_postgres()
    async with database as url, migrated_engine(url) as found:
        yield found


async def test_homes_are_remembered_moved_and_found_from_another_worker(
    engine: AsyncEngine,
) -> None:
    sessions = session_factory(engine)
    one = StoredResourceHomes(sessions)
    assert await one.find("mistral", ["file-1"]) is None
    await one.remember("mistral", ["file-1", "file-1", "", "x" * 600], "a")
    assert await one.find("mistral", ["file-1"]) == "a"
    other = StoredResourceHomes(sessions)  # another worker: no cache
    assert await other.find("mistral", ["unknown", "file-1"]) == "a"
    assert await other.find("anthropic", ["file-1"]) is None  # per provider
    await other.remember("mistral", ["file-1", "job-2"], "b")  # an id seen again moves
    fresh = StoredResourceHomes(sessions)
    assert await fresh.find("mistral", ["file-1"]) == "b"
    assert await fresh.find("mistral", ["job-2"]) == "b"
    assert await fresh.find("mistral", []) is None


async def test_a_home_reads_back_through_the_model(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    await StoredResourceHomes(sessions).remember("mistral", ["f-9"], "a")
    async with sessions() as session:
        row = (await session.execute(select(ResourceHome))).scalar_one()
    assert (row.provider, row.resource_id, row.deployment) == ("mistral", "f-9", "a")
    assert row.created_at.tzinfo is not None


async def test_the_cache_is_bounded(engine: AsyncEngine) -> None:
    homes = StoredResourceHomes(session_factory(engine), cached=2)
    await homes.remember("mistral", ["f1", "f2", "f3"], "a")
    assert await homes.find("mistral", ["f1"]) == "a"  # from the database


def pool(names: tuple[str, ...] = ("a", "b")) -> DeploymentPool:
    spec = MistralSpec()
    return DeploymentPool(
        "mistral",
        [
            Deployment(n, Provider.of(spec, f"http://{n}.example", None), 1.0, None, False)
            for n in names
        ],
    )


def test_states_round_trip_and_garbage_is_ignored() -> None:
    health = Health("cooling_down", 123.5, 120.0, RATE_LIMITED)
    assert decode(encode(health)) == health
    for raw in (
        None,
        b"",
        b"[]",
        b"{}",
        b'{"state":"healthy","until":1}',
        b'{"state":"dead","until":"soon"}',
        b'{"state":"dead","until":true}',
        b"\xff",
    ):
        assert decode(raw) is None


async def test_workers_share_states_through_redis() -> None:
    require_redis()
    prefix = f"passgate-test-{time.monotonic_ns()}:"
    mine, theirs = pool(), pool()
    first = SharedHealth(redis_client(REDIS_URL), [mine], prefix=prefix, interval=0.02)
    second = SharedHealth(redis_client(REDIS_URL), [theirs], prefix=prefix, interval=0.02)
    await first.start()
    await second.start()
    try:
        mine.set_aside(mine.deployments[1], KEY_REFUSED, 5.0)
        deadline = time.monotonic() + 3
        while theirs.health("b").state != "dead":
            assert time.monotonic() < deadline, "the state never reached the other worker"
            await asyncio.sleep(0.02)
        assert theirs.health("b").error == KEY_REFUSED
        assert theirs.pick("m") is theirs.deployments[0]
        assert theirs.health("a").state == "healthy"
    finally:
        await first.stop()
        await second.stop()


async def test_a_pool_of_one_shares_nothing() -> None:
    require_redis()
    alone = pool(("default",))
    shared = SharedHealth(redis_client(REDIS_URL), [alone], prefix="passgate-test-none:")
    await shared.start()
    await shared.stop()
    assert alone.listeners == []


async def test_redis_away_leaves_each_worker_with_its_own_view() -> None:
    mine = pool()
    shared = SharedHealth(redis_client("redis://127.0.0.1:9/0", timeout=0.2), [mine], interval=0.05)
    await shared.start()
    try:
        mine.set_aside(mine.deployments[0], RATE_LIMITED, 5.0)
        await shared.sync()
        assert mine.health("a").state == "cooling_down"
    finally:
        await shared.stop()
