"""Run the Alembic migrations shipped inside the package, safely from several processes.

Two gateways starting at once must not both create the tables: on PostgreSQL the
upgrade runs under a transaction-scoped advisory lock, on SQLite inside
``BEGIN IMMEDIATE`` (the second writer waits on ``busy_timeout``). Either way the
second process finds the schema at head and does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from passgate.storage.db import create_engine, is_postgres, is_sqlite, normalize_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary fixed 64-bit id shared by every passgate process ("passgate" in ASCII).
ADVISORY_LOCK_ID = 0x7061737367617465


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest migration shipped with this version of passgate."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _begin_immediate(engine: AsyncEngine) -> None:
    # Take SQLite's write lock up front so a concurrent upgrade waits for this one
    # instead of racing it; the driver's own BEGIN handling is switched off for that.
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema; safe to run concurrently."""
    url = normalize_url(url)
    engine = create_engine(url, poolclass=NullPool)
    if is_sqlite(url):
        _begin_immediate(engine)
    try:
        # One transaction around every pending migration: Alembic sees it as external
        # and runs them all inside it, so the lock is held until the schema is at head.
        async with engine.connect() as conn, conn.begin():
            if is_postgres(url):
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID}
                )
            await conn.run_sync(_upgrade)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The schema revision the database at ``url`` is at (None when never migrated)."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()
