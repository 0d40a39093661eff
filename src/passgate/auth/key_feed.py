"""Every worker follows the ``key_changes`` table and drops the keys named there.

Without Redis, this is how a key blocked through one worker (or instance, or the
``passgate keys`` CLI) stops working on the others within one poll interval,
instead of when their cache entry expires. Polling happens off the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from passgate.storage.models import KeyChange, utcnow
from passgate.tasks import cancel_and_wait

log = logging.getLogger("passgate.keys")

KEEP = timedelta(hours=1)  # changes older than this are pruned
PRUNE_EVERY = 600.0  # seconds between prunes
BATCH = 1000


async def record_changes(session: AsyncSession, *tokens: str | None) -> None:
    """Note, inside the caller's transaction, that these keys changed."""
    now = utcnow()
    session.add_all(KeyChange(token=t, changed_at=now) for t in dict.fromkeys(tokens) if t)


class KeyChangeFeed:
    """Polls ``key_changes`` and calls ``invalidate`` for each new row; a gateway Component."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        invalidate: Callable[[str], object],
        interval: float,
    ) -> None:
        self._sessions = sessions
        self._invalidate = invalidate
        self._interval = interval
        self._last_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_prune = time.monotonic()
        self._failing = False

    async def start(self) -> None:
        """Begin after the newest change: older ones were applied before this worker cached."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop polling."""
        await cancel_and_wait(self._task)
        self._task = None

    async def poll(self) -> int:
        """Apply the changes since the last poll; returns how many keys were dropped."""
        async with self._sessions() as session:
            if self._last_id is None:
                self._last_id = (await session.scalar(select(func.max(KeyChange.id)))) or 0
                return 0
            rows = (
                await session.execute(
                    select(KeyChange.id, KeyChange.token)
                    .where(KeyChange.id > self._last_id)
                    .order_by(KeyChange.id)
                    .limit(BATCH)
                )
            ).all()
        for row_id, token in rows:
            self._invalidate(token)
            self._last_id = row_id
        if time.monotonic() - self._last_prune > PRUNE_EVERY:
            self._last_prune = time.monotonic()
            async with self._sessions.begin() as session:
                await session.execute(
                    delete(KeyChange).where(KeyChange.changed_at < utcnow() - KEEP)
                )
        return len(rows)

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
                if self._failing:
                    log.warning("key change feed is reading the database again")
                self._failing = False
            except (SQLAlchemyError, OSError) as exc:
                if not self._failing:
                    # the type only: messages can carry bound parameters
                    log.warning("key change feed cannot read the database (%s)", type(exc).__name__)
                self._failing = True
            await asyncio.sleep(self._interval)
