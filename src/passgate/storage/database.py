"""The gateway's database as a component: migrated at start-up, closed at shutdown."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from passgate.config import Settings
from passgate.storage.db import create_engine, database_url, session_factory
from passgate.storage.migrate import upgrade


class Database:
    """One engine and session factory for one gateway; ``start`` runs the migrations.

    The engine connects lazily, so building a ``Database`` does no I/O; each worker
    process calls ``start`` and the migration lock makes all but one of them no-ops.
    """

    def __init__(self, settings: Settings) -> None:
        self.url = database_url(settings)
        self.engine: AsyncEngine = create_engine(self.url)
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(self.engine)

    async def start(self) -> None:
        """Bring the schema to head before the gateway takes requests."""
        await upgrade(self.url)

    async def health(self) -> dict[str, str]:
        """``healthy`` when a trivial query answers within 2 s (readiness probe)."""
        try:
            async with asyncio.timeout(2.0), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            return {"status": "unhealthy", "error": type(exc).__name__}
        return {"status": "healthy"}

    async def stop(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
