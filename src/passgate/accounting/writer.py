"""The batched spend writer: one ``spend_logs`` row per call, written off the request path.

``finished`` only appends to a bounded in-memory queue. A background task writes
batches when one fills up or every ``flush_interval`` seconds. While the database
is down the batch in hand is retried with capped exponential backoff and new rows
keep queueing; ``stop`` flushes everything on graceful shutdown.

Each row lands exactly once: rows are inserted with ``ON CONFLICT (call_id) DO
NOTHING`` (the gateway's own id of the call, never the client's ``x-request-id``,
which clients may repeat), and in the same transaction only the rows actually
inserted add their cost to the key, user, team and end-user totals, so a retried
batch (say, after a lost commit acknowledgement) never counts twice. Which rows were
new comes from ``RETURNING call_id``, or on SQLite from the row count when every row
was new (the usual case; otherwise the batch is redone with ``RETURNING``).

On SQLite a batch's whole transaction runs on a blocking engine: in a thread of its
own, or ``inline`` on the event loop in the spend-writer process, which does nothing
else (see ``passgate.runtime.spend_process``).

Rows and totals go through pre-built driver-level statements (``spend_sql``), rows in
chunks of at most ``CHUNK``, so a batch never holds the event loop for more than one
chunk's conversion: the loop runs other callbacks while each chunk is with the database.
A batch the database refuses (a value out of range, a NOT NULL column left empty) is
split in halves until the refused rows are alone, and only those are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from passgate.accounting.rows import row_from_record
from passgate.accounting.spend_sql import RowError, SpendStatements, Values, call_id_of
from passgate.call_record import CallRecord, call_record
from passgate.config import Settings
from passgate.exchange import Exchange
from passgate.storage.db import sqlite_file_twin

log = logging.getLogger("passgate.accounting")

Row = dict[str, Any]
# gets the rows a committed batch inserted (``row_from_record``), without the key hash id
# (``token``)
BatchListener = Callable[[list[Row]], object]

_FIRST_BACKOFF = 0.05
# SQLSTATE classes of errors a row causes, whenever it is sent: data exception (a value out
# of range, a string too long) and integrity constraint violation
_REFUSED_SQLSTATES = ("22", "23")
_OVERFLOW_LOG_EVERY = 10.0  # seconds between two overflow log lines


def _reason(exc: BaseException) -> str:
    # the driver's message, never the statement or its parameters (key hashes)
    orig = getattr(exc, "orig", None) or exc
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {first_line[:200]}"


class _AlreadyStored(Exception):
    """A batch inserted without RETURNING stored fewer rows than it holds: some were stored
    before (a line sent again by a worker). Rolled back, and redone finding out which."""


def _refused(exc: Exception) -> bool:
    """True when the database (or the conversion before it) refuses the rows themselves:
    sending them again cannot succeed, unlike an outage."""
    if isinstance(exc, IntegrityError | DataError | RowError):
        return True
    if isinstance(exc, DBAPIError):
        # PostgreSQL errors outside the DB-API classes above arrive as plain DBAPIError
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate.startswith(_REFUSED_SQLSTATES)
    return False


class SpendWriter:
    """An ``Observer`` that stores one spend row per call, in batches, exactly once."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_size: int = 1024,
        flush_interval: float = 1.0,
        queue_max: int = 100_000,
        max_backoff: float = 5.0,
        stop_timeout: float | None = 30.0,
        listeners: Sequence[BatchListener] = (),
        inline: bool = False,
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue_max = queue_max
        self.max_backoff = max_backoff
        self.stop_timeout = stop_timeout
        self._listeners = list(listeners)
        self._sql = SpendStatements(engine.dialect)
        self._blocking: Engine | None = sqlite_file_twin(engine)
        # One thread for the blocking engine's one connection: batches never overlap. Inline
        # (in a process that does nothing else) the loop itself runs the transaction: a
        # second thread would take the GIL from it hundreds of times per batch.
        self._thread = (
            ThreadPoolExecutor(1, thread_name_prefix="passgate-spend")
            if self._blocking and not inline
            else None
        )
        self._pending: deque[CallRecord] = deque()
        self._inflight = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._last_overflow_log = -_OVERFLOW_LOG_EVERY
        self.written = 0  # rows inserted
        self.duplicates = 0  # rows whose request id was already stored
        self.dropped = 0  # rows refused because the queue was full or the writer stopped
        self.rejected = 0  # rows the database refused as invalid
        self.retries = 0  # failed write attempts while the database was down

    @classmethod
    def from_settings(
        cls,
        engine: AsyncEngine,
        settings: Settings,
        listeners: Sequence[BatchListener] = (),
        *,
        inline: bool = False,
    ) -> SpendWriter:
        """A writer sized by ``spend_batch_size``, ``spend_flush_interval``, ``spend_queue_max``."""
        return cls(
            engine,
            batch_size=settings.spend_batch_size,
            flush_interval=settings.spend_flush_interval,
            queue_max=settings.spend_queue_max,
            listeners=listeners,
            inline=inline,
        )

    @property
    def statement_engine(self) -> Engine:
        """The engine the writer's statements run on: SQLite's blocking twin, else ``engine``'s."""
        return self._blocking or self.engine.sync_engine

    @property
    def pending(self) -> int:
        """Rows not yet stored (queued or being written)."""
        return len(self._pending) + self._inflight

    def add_listener(self, listener: BatchListener) -> None:
        """Call ``listener(rows)`` after each committed batch with the rows it inserted
        (without ``token``); it must not block (queue, don't send)."""
        self._listeners.append(listener)

    async def finished(self, ex: Exchange) -> None:
        """Queue the call's record; never waits."""
        self.enqueue(call_record(ex))

    def enqueue(self, record: CallRecord) -> None:
        """Queue one call record (``call_record.call_record``; its call id a string); when the
        queue is full (or the writer stopped) count and log it."""
        if self._closed or len(self._pending) >= self.queue_max:
            self._overflow()
            return
        self._pending.append(record)
        self._idle.clear()
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        """Start the background flush task (in the running event loop)."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="passgate-spend-writer"
            )

    async def flush(self) -> None:
        """Wait until every row queued so far is stored (retrying while the database is down)."""
        if self._task is None:
            await self._drain()
            return
        if self.pending:
            self._wake.set()
            await self._idle.wait()

    async def stop(self) -> None:
        """Write every queued row, then end the background task; rows still unwritten after
        ``stop_timeout`` seconds (database down) are logged as lost."""
        timeout = self.stop_timeout
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        try:
            if task is None:
                await asyncio.wait_for(self._drain(), timeout)
            else:
                done, _ = await asyncio.wait({task}, timeout=timeout)
                if not done:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise TimeoutError
        except TimeoutError:
            log.error(
                "spend writer stopped after %ss with %d rows unwritten: they are lost",
                timeout,
                self.pending,
            )
        finally:
            self._closed = True
            if self._thread is not None:
                self._thread.shutdown(wait=False)
            if self._blocking is not None:
                self._blocking.dispose()

    async def _run(self) -> None:
        while True:
            if not self._stopping and len(self._pending) < self.batch_size:
                self._wake.clear()
                try:
                    async with asyncio.timeout(self.flush_interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            try:
                await self._drain()
            except Exception:  # a bug must not end spend logging for the process
                log.exception("spend writer failed; will retry")
                await asyncio.sleep(self.max_backoff)
            if self._stopping and not self._pending:
                return

    async def _drain(self) -> None:
        while self._pending:
            count = min(self.batch_size, len(self._pending))
            batch = [self._pending.popleft() for _ in range(count)]
            self._inflight = count
            stored = False
            try:
                await self._store(batch)
                stored = True
            finally:
                self._inflight = 0
                if not stored:  # cancelled: the rows go back, to be counted (or retried)
                    self._pending.extendleft(reversed(batch))
        self._idle.set()

    async def _store(self, batch: list[CallRecord]) -> None:
        """Write a batch, waiting out outages; split it to isolate rows the database refuses."""
        delay = _FIRST_BACKOFF
        while True:
            try:
                inserted = await self._write(batch)
            except Exception as exc:
                if not _refused(exc):
                    self.retries += 1
                    log.warning(
                        "spend writer: database unavailable (%s); retrying %d rows in %.2fs",
                        _reason(exc),
                        len(batch),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                    continue
                if len(batch) == 1:
                    self.rejected += 1
                    log.error(
                        "spend row %s refused by the database (%s); skipped",
                        batch[0].request_id,
                        type(getattr(exc, "orig", exc)).__name__,
                    )
                    return
                half = len(batch) // 2
                await self._store(batch[:half])
                await self._store(batch[half:])
                return
            self.written += len(inserted)
            self.duplicates += len(batch) - len(inserted)
            self._notify(inserted)
            return

    async def _write(self, batch: Sequence[CallRecord]) -> list[CallRecord]:
        """One transaction: insert the new rows, add their cost to the totals; the records
        inserted."""
        first: dict[str, CallRecord] = {}
        for record in batch:
            first.setdefault(record.call_id, record)
        unique = list(first.values())
        if self._blocking is not None:
            if self._thread is None:
                return self._write_blocking(self._blocking, unique)
            # SQLite: the whole transaction in one trip to a thread (see sqlite_file_twin)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._thread, self._write_blocking, self._blocking, unique
            )
        async with self.engine.begin() as conn:
            # each statement's await hands the loop back while the database works
            return await conn.run_sync(self._transaction, unique)

    def _write_blocking(self, engine: Engine, unique: Sequence[CallRecord]) -> list[CallRecord]:
        try:
            with engine.begin() as conn:
                return self._transaction(conn, unique, counted=self._sql.counts_rows)
        except _AlreadyStored:
            with engine.begin() as conn:
                return self._transaction(conn, unique)

    def _transaction(
        self, conn: Connection, unique: Sequence[CallRecord], counted: bool = False
    ) -> list[CallRecord]:
        """Insert the new rows and add their cost to the totals; the records inserted.

        ``counted``: insert without RETURNING and check the count instead (SQLite: fetching
        a returned id per row costs about a tenth of what a row takes); when some rows turn out to
        be stored already, raise ``_AlreadyStored`` to roll back and redo with RETURNING.
        """
        values: list[Values] = []
        if counted:
            count = 0
            for sql, params in self._sql.insert(unique, returning=False, into=values):
                count += conn.exec_driver_sql(sql, params).rowcount
            if count != len(unique):
                raise _AlreadyStored
            inserted = list(unique)
        else:
            stored: set[str] = set()
            for sql, params in self._sql.insert(unique, into=values):
                stored.update(conn.exec_driver_sql(sql, params).scalars())
            pairs = [
                (record, row)
                for record, row in zip(unique, values, strict=True)
                if call_id_of(row) in stored
            ]
            inserted = [record for record, _ in pairs]
            values = [row for _, row in pairs]
        for sql, param_sets in self._sql.totals(values):
            conn.exec_driver_sql(sql, param_sets)
        return inserted

    def _notify(self, records: Sequence[CallRecord]) -> None:
        if not records or not self._listeners:
            return
        public = []
        for record in records:
            row = row_from_record(record)  # converted once already: it cannot fail now
            del row["token"]
            public.append(row)
        for listener in self._listeners:
            try:
                listener(public)
            except Exception:
                log.exception("spend batch listener %r failed", listener)

    def _overflow(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_overflow_log >= _OVERFLOW_LOG_EVERY:
            self._last_overflow_log = now
            reason = "writer stopped" if self._closed else f"queue full ({self.queue_max} rows)"
            log.error(
                "spend rows DROPPED: %s; %d dropped so far (database down or too slow?)",
                reason,
                self.dropped,
            )
