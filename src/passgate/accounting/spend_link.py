"""Spend rows from a server worker to its instance's spend-writer process, over a Unix socket.

Why a process of its own: a spend writer thread inside a worker made the worker's event
loop measurably slower per call (``docs/performance.md``), because the two threads take
the GIL from each other hundreds of times per batch. In a worker, a call now costs a list of
its raw values (``call_record``, with its ``orjson`` line) and a share of one ``write`` per
batching interval; the process (``passgate.runtime.spend_process``) turns lines
into call records and stores them with the same ``SpendWriter``, for every worker of the
instance.

Wire format: one call per line, a JSON array (``orjson``) of the raw values
``rows.call_record`` gathers; the process stores it as it is (``spend_sql`` makes the
driver values of it: times, strings cut to their columns), so that work is off the workers
too. The socket lives in a directory only the server's user can open.

Delivery: a worker keeps its lines until the socket has taken them, and sends a chunk again
when a write failed part-way (the process went away and is restarted by the server): the
spend log's primary key is the gateway's ``call_id`` and rows are inserted with ``ON
CONFLICT DO NOTHING``, so a line received twice is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

import orjson

from passgate.call_record import CallRecord, call_record, record_of
from passgate.exchange import Exchange

log = logging.getLogger("passgate.accounting")

LINGER = 0.01  # seconds a worker gathers lines before a write: one system call per batch
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 2.0
_LOG_EVERY = 10.0  # seconds between two log lines about the same trouble


def encode(record: CallRecord) -> bytes:
    """One call record as one line: a JSON array in field order."""
    return orjson.dumps(record, default=tuple, option=orjson.OPT_APPEND_NEWLINE)


def decode(line: bytes) -> CallRecord:
    """The call record of one line (``ValueError`` when it is not one: not a JSON array of
    the record's length, its call id not a string or its start not a number). Other values
    of the wrong kind are refused by the writer, which stores the rest of the batch."""
    values = orjson.loads(line)
    if not isinstance(values, list):
        raise ValueError("a spend line must be a JSON array")
    return record_of(values)


class SpendForwarder:
    """An ``Observer`` for server workers: each call's row goes to the spend-writer process."""

    def __init__(
        self,
        path: str,
        *,
        queue_max: int = 100_000,
        stop_timeout: float = 30.0,
        linger: float = LINGER,
    ) -> None:
        self.path = path
        self.queue_max = queue_max
        self.stop_timeout = stop_timeout
        self.linger = linger
        self._lines: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stream: asyncio.StreamWriter | None = None
        self._stopping = False
        self._closed = False
        self._last_log = -_LOG_EVERY
        self.sent = 0  # lines the socket has taken
        self.dropped = 0  # lines refused because the queue was full or the worker stopped

    @property
    def pending(self) -> int:
        """Rows not yet handed to the spend-writer process."""
        return len(self._lines)

    async def finished(self, ex: Exchange) -> None:
        """Queue the call's row; never waits."""
        self.enqueue(encode(call_record(ex)))

    def enqueue(self, line: bytes) -> None:
        """Queue one encoded row; when the queue is full (or stopped) count and log it."""
        if self._closed or len(self._lines) >= self.queue_max:
            self.dropped += 1
            if self._due():
                log.error("spend rows DROPPED: %d so far (queue full or stopping)", self.dropped)
            return
        self._lines.append(line)
        self._wake.set()

    async def start(self) -> None:
        """Start sending (in the running event loop); connecting waits for the process."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="passgate-spend-forwarder"
            )

    async def stop(self) -> None:
        """Send every queued row, then close the connection (at most ``stop_timeout`` s)."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=self.stop_timeout)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                log.error(
                    "spend forwarder stopped after %ss with %d rows unsent: they are lost",
                    self.stop_timeout,
                    len(self._lines),
                )
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
            with contextlib.suppress(OSError):
                await stream.wait_closed()

    async def _run(self) -> None:
        delay = _FIRST_BACKOFF
        while True:
            if not self._lines:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                if not self._stopping:
                    await asyncio.sleep(self.linger)  # let the lines of this moment gather
                continue
            try:
                await self._send()
            except OSError as exc:
                self._close_stream()
                if self._due():
                    log.warning(
                        "spend-writer process unreachable (%s); %d rows wait",
                        type(exc).__name__,
                        len(self._lines),
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            delay = _FIRST_BACKOFF

    async def _send(self) -> None:
        if self._stream is None:
            _, self._stream = await asyncio.open_unix_connection(self.path)
        lines = self._lines
        count = len(lines)
        batch = [lines.popleft() for _ in range(count)]
        try:
            self._stream.write(b"".join(batch))
            await self._stream.drain()
        except BaseException:
            # Some of it may have arrived: sent again, it is stored once (ON CONFLICT).
            lines.extendleft(reversed(batch))
            raise
        self.sent += count

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _due(self) -> bool:
        """True at most once per ``_LOG_EVERY`` seconds: one line per episode, not per call."""
        now = time.monotonic()
        if now - self._last_log < _LOG_EVERY:
            return False
        self._last_log = now
        return True
