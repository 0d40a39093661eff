"""JSON log lines on stderr, and the one access line written per pass-through call.

Every record becomes one JSON object on one line. Records are queued by the
logging call and formatted and written in batches by a writer thread, so the
event loop only builds a record and enqueues it. The per-call access line is
cheaper still: when the standard set-up is the only handler, the line is built
on the loop (no LogRecord, no handler chain) and only written by the thread.
The formatter redacts anything shaped like a key (``sk-...``, ``Bearer ...``)
and any secret it was given, as a second line of defence: no code is meant to
log one in the first place.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from logging.handlers import QueueHandler
from typing import IO, Any

import orjson

from passgate.call_record import access_fields, call_record
from passgate.exchange import Exchange

ACCESS_LOGGER = "passgate.access"
REDACTED = "[redacted]"

_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+")
_SK_TOKEN = re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}")
_MIN_SECRET_LENGTH = 4
_LINGER = 0.02  # seconds the writer waits after a write, so that lines batch under load


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; fields passed as ``extra={"fields": {...}}`` join it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        literals: set[str] = set()
        for secret in secrets:
            if len(secret) >= _MIN_SECRET_LENGTH:
                literals.add(secret)
                # The secret as it appears inside a JSON string, when escaping changes it.
                literals.add(orjson.dumps(secret).decode()[1:-1])
        # Longest first, so a secret that contains another is redacted whole.
        self._secrets = tuple(sorted(literals, key=len, reverse=True))
        joined = "|".join(map(re.escape, self._secrets))
        self._literals = re.compile(joined) if joined else None
        self._second: tuple[int, str] = (-1, "")  # whole second -> its ISO text, for line()

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line, secrets redacted."""
        created = datetime.fromtimestamp(record.created, UTC)
        payload: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__.get("fields")
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return self.redact(orjson.dumps(payload, default=str).decode())

    def info_line(
        self, logger: str, message: str, fields: dict[str, Any], when: float | None = None
    ) -> str:
        """The line ``format`` would give an INFO record with these fields, logged at ``when``
        (seconds since the epoch; now when None)."""
        now = time.time() if when is None else when
        second = int(now)
        cached, text = self._second
        if cached != second:  # datetime formatting costs more than the rest of the line
            text = datetime.fromtimestamp(second, UTC).isoformat().replace("+00:00", "")
            self._second = (second, text)
        payload: dict[str, Any] = {
            "time": f"{text}.{int((now - second) * 1000):03d}Z",
            "level": "info",
            "logger": logger,
            "message": message,
        }
        payload.update(fields)
        return self.redact(orjson.dumps(payload, default=str).decode())

    def redact(self, text: str) -> str:
        """``text`` with key-shaped tokens and the configured secrets replaced."""
        # Substring checks first: a regex scan costs ~20x more, and most lines hold nothing.
        if self._literals is not None and any(secret in text for secret in self._secrets):
            text = self._literals.sub(REDACTED, text)
        if "bearer" in text.lower():
            text = _BEARER.sub("Bearer " + REDACTED, text)
        if "sk-" in text:
            text = _SK_TOKEN.sub("sk-" + REDACTED, text)
        return text


class _LineWriter:
    """The listener thread: formats queued records and writes them, many lines per write.

    After each write it lingers a little, so under load the thread wakes (and takes the
    GIL from the event loop) once per batch instead of once per record: per-record wake-ups
    and writes slowed the event loop under load (``docs/performance.md``). The first line
    after a quiet spell is written at once.
    """

    def __init__(
        self,
        records: queue.SimpleQueue[logging.LogRecord | str | None],
        formatter: JsonFormatter,
        stream: IO[str],
        linger: float = _LINGER,
    ) -> None:
        self._records = records
        self._formatter = formatter
        self._stream = stream
        self._linger = linger
        self._thread = threading.Thread(target=self._run, name="passgate-log-writer", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Write every record queued so far, then end the thread."""
        self._records.put(None)
        self._thread.join()

    def _run(self) -> None:
        records = self._records
        while True:
            batch: list[logging.LogRecord | str | None] = [records.get()]
            while True:
                try:
                    batch.append(records.get_nowait())
                except queue.Empty:
                    break
            if not self._write(batch):
                return
            time.sleep(self._linger)

    @property
    def formatter(self) -> JsonFormatter:
        """The formatter of every line this writer writes."""
        return self._formatter

    def _write(self, batch: list[logging.LogRecord | str | None]) -> bool:
        """Write the batch's lines; False once the stop marker is in it."""
        lines: list[str] = []
        going = True
        for record in batch:
            if record is None:
                going = False
                break
            if isinstance(record, str):  # formatted already (an access line)
                lines.append(record)
                continue
            try:
                lines.append(self._formatter.format(record))
            except Exception:  # a record that cannot be formatted must not stop the others
                lines.append(self._formatter.format(_unformattable(record)))
        if lines:
            try:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass  # stderr is gone: there is nowhere left to report it
        return going


def _unformattable(record: logging.LogRecord) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": record.name,
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "a log record could not be formatted",
        }
    )


class _BackgroundHandler(QueueHandler):
    """Enqueues records unformatted; the writer thread formats and writes them."""

    def __init__(
        self, records: queue.SimpleQueue[logging.LogRecord | str | None], writer: _LineWriter
    ) -> None:
        super().__init__(records)
        self._records = records
        self._writer: _LineWriter | None = writer
        self._formatter = writer.formatter

    def info_line(
        self, logger: str, message: str, fields: dict[str, Any], when: float | None = None
    ) -> None:
        """Queue the line an INFO record with these fields would give, without the record."""
        self._records.put(self._formatter.info_line(logger, message, fields, when))

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The default prepare() formats on the calling thread (the event loop); the
        # writer thread formats instead, and nothing crosses a process boundary.
        return record

    def close(self) -> None:
        """Stop the writer once all queued records are written."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()
        super().close()


def configure_logging(
    level: str, *, secrets: Iterable[str] = (), stream: IO[str] | None = None
) -> None:
    """Send every log record to ``stream`` (stderr) as JSON lines, replacing root handlers.

    ``secrets`` are literal values (master key, provider key) redacted wherever they
    appear. Call once per process; calling again replaces the previous setup.
    """
    shutdown_logging()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    records: queue.SimpleQueue[logging.LogRecord | str | None] = queue.SimpleQueue()
    writer = _LineWriter(records, JsonFormatter(secrets), stream or sys.stderr)
    root.addHandler(_BackgroundHandler(records, writer))
    root.setLevel(level.upper())
    writer.start()


def shutdown_logging() -> None:
    """Write every queued record and detach the handler ``configure_logging`` installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _BackgroundHandler):
            root.removeHandler(handler)
            handler.close()


class RequestLogger:
    """Observer: one JSON access line per pass-through call on the ``passgate.access`` logger.

    Under ``passgate`` with accounting on a worker has none: it sends each call's record to
    its instance's spend-writer process anyway, which writes the line (``log``) from it.
    """

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    async def finished(self, ex: Exchange) -> None:
        """Enqueue the access line; writing happens off the event loop."""
        self.log(access_fields(call_record(ex)))

    def log(self, fields: dict[str, Any], when: float | None = None) -> None:
        """Enqueue the access line of a call with these fields that ended at ``when`` (now
        when None)."""
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        sink = _sole_handler(logger)
        if sink is not None:
            # The production set-up: a LogRecord, the handler chain and formatting on the
            # writer thread cost ~3x this line built here (and the thread's GIL time).
            sink.info_line(logger.name, "request", fields, when)
            return
        # makeRecord + handle skips Logger._log's caller lookup (a stack walk) per call.
        record = logger.makeRecord(
            logger.name, logging.INFO, "", 0, "request", (), None, extra={"fields": fields}
        )
        if when is not None:
            record.created = when
        logger.handle(record)


def _sole_handler(logger: logging.Logger) -> _BackgroundHandler | None:
    """The handler ``configure_logging`` installed, when it alone would get ``logger``'s INFO
    records, unfiltered; None otherwise (other handlers, filters: the record path)."""
    found: _BackgroundHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if (
                found is not None
                or not isinstance(handler, _BackgroundHandler)
                or handler.filters
                or handler.level > logging.INFO
            ):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found
