"""Retention: spend rows, hourly rollups and, much later, daily rollups past their age go.

Runs beside the spend writer, never on the request path: every ``retention_interval``
seconds it deletes rows older than ``spend_log_retention_days`` in transactions of at
most ``retention_batch_size`` rows, handing the event loop (and the database's write
lock) back between two, so a large backlog never blocks the writer for long. Hourly
rollups go with the rows; daily rollups are kept for ``rollup_retention_days``, and a weekly
rollup as long as one of its days is; all one hour's (or day's, week's) rows per
transaction. A failed pass
is logged and tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from passgate.config import Settings
from passgate.storage.models import SpendLog, SpendRollup, utcnow

log = logging.getLogger("passgate.accounting")

_LOGS = cast(Table, SpendLog.__table__)
_ROLLUPS = cast(Table, SpendRollup.__table__)
_DAY = timedelta(days=1)
_WEEK_TAIL = 6 * _DAY  # a week's last day starts six days after the week


class Retention:
    """Deletes old spend rows and rollups in small batches, on a timer."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        log_days: float,
        rollup_days: float,
        batch_size: int = 1000,
        interval: float = 3600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._log_age = log_days * _DAY if log_days > 0 else None
        self._rollup_age = rollup_days * _DAY if rollup_days > 0 else None
        self._batch = batch_size
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.deleted_rows = 0
        self.deleted_rollups = 0

    @classmethod
    def from_settings(cls, engine: AsyncEngine, settings: Settings) -> Retention:
        """Retention as the ``*_retention_*`` settings describe it."""
        return cls(
            engine,
            log_days=settings.spend_log_retention_days,
            rollup_days=settings.rollup_retention_days,
            batch_size=settings.retention_batch_size,
            interval=settings.retention_interval,
        )

    async def start(self) -> None:
        """Start the timer (the first pass runs at once)."""
        if self._task is None and (self._log_age or self._rollup_age):
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="passgate-retention"
            )

    async def stop(self) -> None:
        """Stop the timer, abandoning a pass under way (its batches done so far stay done)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except (SQLAlchemyError, OSError) as exc:
                # the text may carry SQL parameters: the type says enough
                log.warning(
                    "retention pass failed (%s); next try in %ss",
                    type(exc).__name__,
                    self._interval,
                )
            await asyncio.sleep(self._interval)

    async def run_once(self) -> tuple[int, int]:
        """One pass: (spend rows, rollup rows) deleted."""
        rows = rollups = 0
        now = self._clock()
        if self._log_age is not None:
            rows = await self._delete_rows(now - self._log_age)
        # hourly rollups are as many as the distinct keys (users, ...) per hour: they go with
        # the rows; daily ones stay for the charts' history
        if self._log_age is not None:
            rollups += await self._delete_rollups("hour", now - self._log_age)
        if self._rollup_age is not None:
            rollups += await self._delete_rollups("day", now - self._rollup_age)
            # a week goes with its last day, so a week's rollup never outlives all its days
            rollups += await self._delete_rollups("week", now - self._rollup_age - _WEEK_TAIL)
        self.deleted_rows += rows
        self.deleted_rollups += rollups
        return rows, rollups

    async def _delete_rows(self, cutoff: datetime) -> int:
        c = _LOGS.c
        oldest = select(c.call_id).where(c.start_time < cutoff).limit(self._batch)
        statement = delete(_LOGS).where(c.call_id.in_(oldest))
        total = 0
        while True:
            async with self._engine.begin() as conn:
                count = (await conn.execute(statement)).rowcount
            total += count
            if count < self._batch:
                return total
            await asyncio.sleep(0)  # let the writer's next batch in between two

    async def _delete_rollups(self, period: str, cutoff: datetime) -> int:
        start, of_period = _ROLLUPS.c.start, _ROLLUPS.c.period == period
        first = select(func.min(start)).where(of_period, start < cutoff).scalar_subquery()
        statement = delete(_ROLLUPS).where(of_period, start == first)
        total = 0
        while True:
            async with self._engine.begin() as conn:
                count = (await conn.execute(statement)).rowcount
            if not count:
                return total
            total += count
            await asyncio.sleep(0)
