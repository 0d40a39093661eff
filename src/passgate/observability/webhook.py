"""A generic webhook: spend rows POSTed as JSON arrays to a configured URL.

Rows wait in a bounded in-memory buffer and are sent in batches (by size, or
after ``flush_interval``) by one background task. A batch that fails (connection
error, timeout, 408, 429 or 5xx) is retried with exponential backoff and jitter
until it is accepted, and the rows after it wait their turn, so order is kept.
Other 4xx answers can never succeed: that batch is dropped and logged.

Delivery is at least once. A timeout leaves it unknown whether the receiver got
the batch, so it is sent again: receivers deduplicate by each row's
``call_id`` (every batch also carries an ``x-passgate-batch-id`` header that
stays the same across the retries of that batch). When the buffer is full new
rows are refused and counted in ``dropped``; the database remains the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

import aiohttp
import orjson

from passgate.config import Settings

log = logging.getLogger(__name__)

Row = dict[str, Any]

_RETRY_STATUSES = frozenset((408, 429))


class WebhookExporter:
    """Delivers spend rows to ``url`` in batches, with retries; ``start`` and ``stop`` it."""

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 100,
        max_buffer: int = 100_000,
        flush_interval: float = 1.0,
        timeout: float = 10.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stop_timeout = stop_timeout
        self.dropped = 0
        self.delivered = 0
        self._buffer: deque[Row] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._overflowing = False
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookExporter | None:
        """The exporter for ``settings.webhook_url``; None when it is not set."""
        if settings.webhook_url is None:
            return None
        return cls(
            settings.webhook_url,
            batch_size=settings.webhook_batch_size,
            flush_interval=settings.spend_flush_interval,
        )

    @property
    def pending(self) -> int:
        """Rows buffered and not yet accepted by the receiver."""
        return len(self._buffer)

    async def deliver(self, rows: Iterable[Row]) -> None:
        """Queue rows for delivery; returns at once (rows past the buffer bound are dropped)."""
        self.submit(rows)

    def submit(self, rows: Iterable[Row]) -> int:
        """Queue rows without awaiting; returns how many were accepted."""
        buffer = self._buffer
        accepted = 0
        refused = 0
        for row in rows:
            if len(buffer) < self.max_buffer and not self._closing:
                buffer.append(row)
                accepted += 1
            else:
                refused += 1
        if refused:
            # One warning per overflow episode, not one per call while it lasts.
            if not self._overflowing:
                log.warning("webhook buffer full or closed: spend rows are being dropped")
            self._overflowing = True
            self.dropped += refused
        elif accepted:
            self._overflowing = False
        if len(buffer) >= self.batch_size:
            self._wake.set()
        return accepted

    async def start(self) -> None:
        """Open the HTTP session and start the delivery task."""
        if self._task is not None:
            return
        self._closing = False
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook")

    async def stop(self) -> None:
        """Deliver the buffered rows (waiting at most ``stop_timeout`` s), then close."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(task, self.stop_timeout)
        except TimeoutError:
            log.error("webhook stopped with %d spend rows undelivered", len(self._buffer))
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    async def _run(self) -> None:
        while True:
            if not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            while self._buffer:
                await self._send_first_batch()
            if self._closing:
                return

    async def _send_first_batch(self) -> None:
        count = min(self.batch_size, len(self._buffer))
        batch = [self._buffer[i] for i in range(count)]
        try:
            body = orjson.dumps(batch, default=str, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError:
            log.exception("spend rows cannot be encoded as JSON; batch dropped")
            self._discard(count, delivered=False)
            return
        headers = {"content-type": "application/json", "x-passgate-batch-id": uuid.uuid4().hex}
        attempt = 0
        while True:
            outcome = await self._post(body, headers)
            if outcome != "retry":
                break
            delay = min(self.max_backoff, self.backoff * 2**attempt)
            attempt += 1
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        self._discard(count, delivered=outcome == "ok")

    def _discard(self, count: int, *, delivered: bool) -> None:
        for _ in range(count):
            self._buffer.popleft()
        if delivered:
            self.delivered += count
        else:
            self.dropped += count

    async def _post(self, body: bytes, headers: dict[str, str]) -> str:
        """``ok``, ``retry`` or ``reject`` (a 4xx that a retry cannot fix)."""
        assert self._session is not None
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("webhook delivery failed, will retry: %s", type(exc).__name__)
            return "retry"
        except Exception:
            # A bug here must not end the delivery task and strand the buffer.
            log.exception("webhook delivery failed unexpectedly, will retry")
            return "retry"
        if status < 300:
            return "ok"
        if status >= 500 or status in _RETRY_STATUSES:
            log.warning("webhook receiver answered %d, will retry", status)
            return "retry"
        log.error("webhook receiver refused a batch of spend rows with %d; dropped", status)
        return "reject"
