"""Throw-away databases for tests: a migrated SQLite file, or a fresh PostgreSQL database.

Each PostgreSQL database is named ``pg_<random>`` (so parallel runs never collide)
and dropped when the context ends.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from passgate.storage.db import create_engine
from passgate.storage.migrate import upgrade
from tests.support.services import PG_DSN, require_postgres


def sqlite_url(directory: Path) -> str:
    """A URL for a new SQLite file in ``directory``, as a user would write it."""
    return f"sqlite:///{directory / 'passgate.db'}"


@asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (as a ``postgresql://`` URL), dropped afterwards."""
    require_postgres()
    name = "pg_" + secrets.token_hex(8)
    admin = create_engine(PG_DSN, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(PG_DSN).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


@asynccontextmanager
async def migrated_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """The database at ``url`` brought to head, and an engine on it (disposed afterwards)."""
    await upgrade(url)
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
