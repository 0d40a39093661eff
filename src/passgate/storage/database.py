"""The gateway's database as a component: an engine and sessions, closed at shutdown.

The schema is not this component's business: ``passgate`` runs the migrations
(``storage.migrate``) once, before any worker starts, so a worker never imports Alembic
(memory it would keep for its whole life).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from passgate.config import Settings
from passgate.storage.db import create_engine, database_url, session_factory


class Database:
    """One engine and session factory for one gateway, on an already migrated database.

    The engine connects lazily, so neither building a ``Database`` nor starting it does I/O.
    """

    def __init__(self, settings: Settings) -> None:
        self.url = database_url(settings)
        self.engine: AsyncEngine = create_engine(self.url)
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(self.engine)

    async def start(self) -> None:
        """Nothing to open: connections are made on first use."""

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
