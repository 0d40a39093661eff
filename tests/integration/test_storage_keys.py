"""Keys, users, teams and end users on a real database: SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from passgate.api.key_schemas import (
    DeleteKeysRequest,
    GenerateKeyRequest,
    ListQuery,
    RegenerateKeyRequest,
    UpdateKeyRequest,
)
from passgate.api.key_service import KeyService
from passgate.auth.key_state import KeyStateLoader
from passgate.auth.keys import hash_key
from passgate.errors import GatewayError
from passgate.storage import entities_repo
from passgate.storage.db import create_engine, session_factory
from passgate.storage.migrate import current_revision, head_revision
from passgate.storage.models import Base, EndUser, Team, User, utcnow
from tests.support.databases import fresh_postgres, migrated_engine, sqlite_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    async with fresh_postgres() as url:
        yield url


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_engine(db_url) as engine:
        yield session_factory(engine)


def generate(**fields: object) -> GenerateKeyRequest:
    return GenerateKeyRequest.model_validate(fields)


def _schema_diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def test_migrations_reach_head_and_match_the_models(db_url: str) -> None:
    async with migrated_engine(db_url) as engine, engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []
    assert await current_revision(db_url) == head_revision() is not None


async def test_keys_survive_reopening_the_database(db_url: str) -> None:
    async with migrated_engine(db_url) as engine:
        secret, row = await KeyService(session_factory(engine)).generate(
            generate(key_alias="survivor", models=["mistral-small-latest"], max_budget=5.0)
        )
    async with migrated_engine(db_url) as engine:
        again = await KeyService(session_factory(engine)).get(secret)
    assert again.token == row.token == hash_key(secret)
    assert (again.key_alias, again.models, again.max_budget) == (
        "survivor",
        ["mistral-small-latest"],
        5.0,
    )
    assert again.created_at.tzinfo is not None


async def test_only_the_hash_is_stored(sessions: async_sessionmaker[AsyncSession]) -> None:
    secret, row = await KeyService(sessions).generate(generate())
    async with sessions() as session:
        stored = await session.get(type(row), row.token)
    assert stored is not None
    assert secret not in repr(vars(stored))


async def test_update_regenerate_block_and_delete(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    service = KeyService(sessions)
    secret, row = await service.generate(generate(key_alias="a", metadata={"owner": "x"}))
    updated = await service.update(
        UpdateKeyRequest.model_validate({"key": secret, "rpm_limit": 10, "duration": "1h"})
    )
    assert updated.rpm_limit == 10 and updated.metadata_ == {"owner": "x"}
    assert updated.expires is not None and updated.expires > utcnow() + timedelta(minutes=59)

    blocked = await service.set_blocked(row.token, True)
    assert blocked.blocked

    new_secret, regenerated = await service.regenerate(
        RegenerateKeyRequest.model_validate({"key": secret, "grace_period": "1h"})
    )
    assert regenerated.token == hash_key(new_secret) != row.token
    assert (regenerated.rpm_limit, regenerated.key_alias, regenerated.blocked) == (10, "a", True)
    loader = KeyStateLoader(sessions)
    old = await loader(row.token)
    assert old is not None and old.replaced and old.grace_until is not None
    current = await loader(regenerated.token)
    assert current is not None and not current.replaced

    with pytest.raises(GatewayError) as missing:
        await service.get(secret)
    assert missing.value.status == 404

    deleted = await service.delete(DeleteKeysRequest.model_validate({"key_aliases": ["a"]}))
    assert deleted == [regenerated.token]
    assert await loader(row.token) is None and await loader(regenerated.token) is None


async def test_a_keys_allowed_deployments_reach_its_principal(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    service = KeyService(sessions)
    loader = KeyStateLoader(sessions)
    _, row = await service.generate(generate(allowed_deployments=["eu-west", "us.east_2"]))
    state = await loader(row.token)
    assert state is not None
    assert state.principal.allowed_deployments == ("eu-west", "us.east_2")

    await service.update(
        UpdateKeyRequest.model_validate({"key": row.token, "allowed_deployments": ["eu-west"]})
    )
    state = await loader(row.token)
    assert state is not None and state.principal.allowed_deployments == ("eu-west",)

    await service.update(
        UpdateKeyRequest.model_validate({"key": row.token, "allowed_deployments": None})
    )
    state = await loader(row.token)
    assert state is not None and state.principal.allowed_deployments == ()
    _, plain = await service.generate(generate())
    state = await loader(plain.token)
    assert state is not None and state.principal.allowed_deployments == ()


async def test_delete_is_all_or_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    service = KeyService(sessions)
    secret, row = await service.generate(generate())
    with pytest.raises(GatewayError) as err:
        await service.delete(DeleteKeysRequest.model_validate({"keys": [secret, "sk-missing"]}))
    assert err.value.status == 404 and "keys[1]" in err.value.message
    assert (await service.get(row.token)).token == row.token


async def test_alias_and_chosen_secret_conflicts_are_409(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    service = KeyService(sessions)
    await service.generate(generate(key_alias="taken", key="sk-chosen-1"))
    for fields in ({"key_alias": "taken"}, {"key": "sk-chosen-1"}):
        with pytest.raises(GatewayError) as err:
            await service.generate(generate(**fields))
        assert err.value.status == 409
        assert "sk-chosen-1" not in err.value.message
    # A secret replaced by a regeneration still in its grace period is taken too.
    await service.regenerate(
        RegenerateKeyRequest.model_validate({"key": "sk-chosen-1", "grace_period": "1h"})
    )
    with pytest.raises(GatewayError) as err:
        await service.generate(generate(key="sk-chosen-1"))
    assert err.value.status == 409


async def test_list_pages_and_filters(sessions: async_sessionmaker[AsyncSession]) -> None:
    service = KeyService(sessions)
    for i in range(5):
        await service.generate(generate(user_id="u-list", team_id=f"t{i % 2}"))
    await service.generate(generate(user_id="someone-else"))
    rows, total = await service.page(ListQuery(user_id="u-list", size=2, page=3))
    assert (len(rows), total) == (1, 5)
    rows, total = await service.page(ListQuery(user_id="u-list", team_id="t0"))
    assert total == 3 and {r.team_id for r in rows} == {"t0"}


async def test_entities_crud_and_spend(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await entities_repo.upsert(session, User, "u1", {"max_budget": 10.0})
        await entities_repo.upsert(session, Team, "t1", {"team_alias": "core"})
        await entities_repo.upsert(session, EndUser, "e1", {"blocked": True})
    async with sessions.begin() as session:
        assert await entities_repo.add_spend(session, User, "u1", 1.5)
        assert await entities_repo.add_spend(session, User, "u1", 2.0)
        assert not await entities_repo.add_spend(session, User, "nobody", 1.0)
        await entities_repo.update_fields(session, Team, "t1", {"max_budget": 3.0})
    async with sessions() as session:
        user = await entities_repo.get(session, User, "u1")
        assert user is not None and user.spend == pytest.approx(3.5)
        teams = await entities_repo.get_many(session, Team, ["t1", "t2"])
        assert list(teams) == ["t1"] and teams["t1"].max_budget == 3.0
        rows, total = await entities_repo.page(session, EndUser, 1, 10)
        assert total == 1 and rows[0].blocked
    async with sessions.begin() as session:
        assert await entities_repo.remove(session, Team, "t1")
        assert not await entities_repo.remove(session, Team, "t1")
    with pytest.raises(ValueError, match="user_id"):
        async with sessions.begin() as session:
            await entities_repo.update_fields(session, User, "u1", {"user_id": "u2"})


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    async with migrated_engine(sqlite_url(tmp_path)) as engine, engine.connect() as conn:
        mode = await conn.exec_driver_sql("PRAGMA journal_mode")
        assert mode.scalar() == "wal"
        timeout = await conn.exec_driver_sql("PRAGMA busy_timeout")
        assert int(timeout.scalar() or 0) > 0


async def test_engine_hides_parameters_from_errors(tmp_path: Path) -> None:
    engine = create_engine(sqlite_url(tmp_path))
    try:
        async with engine.connect() as conn:
            with pytest.raises(Exception) as err:
                await conn.exec_driver_sql("SELECT * FROM no_such_table WHERE x = ?", ("s3cr3t",))
        assert "s3cr3t" not in str(err.value)
    finally:
        await engine.dispose()
