"""The spend-writer process: one per gateway instance, recording the calls its workers send.

``passgate.runtime.server`` binds the Unix socket, starts this module with the socket's file
descriptor (``spend_launcher``), then the workers; each worker's ``SpendForwarder`` sends
one line per call. Here each line becomes a call record again and goes through the same
batched ``SpendWriter`` as ever (queue, retries while the database is down, exactly
once), on to the webhook when one is configured, and, with ``log_requests``, becomes the
call's JSON access line. A worker that sends records formats no log line: the record
already carries every field of it, and here lines are made in runs, back to back, where
a worker made each one between two calls (and handed it to a log thread that took the
GIL from its event loop), which cost the workers throughput (``docs/performance.md``).

The process ignores SIGINT and SIGTERM: the server stops it by closing its stdin once the
workers have exited, so the calls they sent while shutting down are recorded too. It then
reads every connection to its end, flushes the writer and the webhook, and exits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import sys
from collections.abc import Callable, Sequence

from passgate.accounting.retention import Retention
from passgate.accounting.spend_link import decode
from passgate.accounting.writer import SpendWriter
from passgate.call_record import CallRecord, access_fields, end_time
from passgate.config import Settings
from passgate.lines import LineSplitter
from passgate.observability.logs import RequestLogger
from passgate.observability.webhook import WebhookExporter
from passgate.runtime.child_process import run_child, stdin_closed
from passgate.runtime.process import collect_seldom
from passgate.storage.db import create_engine, database_url

log = logging.getLogger("passgate.accounting")

MODULE = "passgate.runtime.spend_process"
_READ_SIZE = 1 << 16
_BAD_LINES_LOGGED = 10


class Receiver:
    """Reads call records from worker connections and hands each to every consumer."""

    def __init__(self, consumers: Sequence[Callable[[CallRecord], None]]) -> None:
        self._consumers = tuple(consumers)
        self._connections: set[asyncio.Task[None]] = set()
        self.bad_lines = 0
        self.failures = 0  # records a consumer could not take (the others still got them)

    async def handle(self, reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        """One worker's connection, read to its end."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        lines = LineSplitter()
        try:
            while chunk := await reader.read(_READ_SIZE):
                for line in lines.feed(chunk):
                    self._take(line)
        except OSError as exc:
            log.warning("spend connection from a worker failed: %s", type(exc).__name__)
        finally:
            if lines.rest:
                self._take(lines.rest)  # a worker that died mid-line: the piece is refused below
            stream.close()
            if task is not None:
                self._connections.discard(task)

    def _take(self, line: bytes) -> None:
        if not line:
            return
        try:
            record = decode(line)
        except ValueError:
            self.bad_lines += 1
            if self.bad_lines <= _BAD_LINES_LOGGED:
                log.error("spend-writer process: not a spend row (%d bytes)", len(line))
            return
        for consume in self._consumers:
            try:
                consume(record)
            except Exception as exc:
                # decode() checked the record's shape, not every value: one odd value must
                # cost its own line or row, never the rest of the worker's connection.
                self.failures += 1
                if self.failures <= _BAD_LINES_LOGGED:
                    log.error("spend-writer process: a call record failed (%s)", type(exc).__name__)

    async def drain(self, seconds: float) -> None:
        """Wait until every open connection has ended (workers flush, then close); after
        ``seconds``, close the ones still open."""
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=seconds)
            if pending:
                log.error("spend-writer process: closing %d worker connections", len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)


def _same(value: None) -> None:
    return value


def access_line_writer(logger: RequestLogger) -> Callable[[CallRecord], None]:
    """A consumer that writes each record's access line, stamped with the call's end."""

    def write(record: CallRecord) -> None:
        logger.log(access_fields(record), end_time(record))

    return write


async def serve(settings: Settings, listener: socket.socket) -> None:
    """CallRecord what the workers send until stdin closes, then flush everything and return."""
    engine = create_engine(database_url(settings))
    writer = SpendWriter.from_settings(engine, settings, inline=True)
    webhook = WebhookExporter.from_settings(settings)
    if webhook is not None:
        writer.add_listener(webhook.submit)
        await webhook.start()
    writer.start()
    retention = Retention.from_settings(engine, settings)
    await retention.start()
    consumers: list[Callable[[CallRecord], None]] = [writer.enqueue]
    if settings.log_requests:
        consumers.append(access_line_writer(RequestLogger()))
    receiver = Receiver(consumers)
    server = await asyncio.start_unix_server(receiver.handle, sock=listener)
    collect_seldom()
    try:
        await stdin_closed()
        server.close()
        await receiver.drain(writer.stop_timeout or 30.0)
    finally:
        await retention.stop()
        await writer.stop()
        if webhook is not None:
            await webhook.stop()
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run until stdin closes; ``--fd`` is the listening socket the server bound."""
    # sqlite3 binds None through its generic adaptation look-ups, and a spend row holds a
    # dozen NULLs; with an adapter registered for it the look-up finds one at once and the
    # value is still bound as NULL (docs/performance.md).
    sqlite3.register_adapter(type(None), _same)
    return run_child("passgate spend writer", MODULE, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
