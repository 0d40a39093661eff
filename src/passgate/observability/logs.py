"""JSON log lines on stderr, and the one access line written per pass-through call.

Every record becomes one JSON object on one line. Records are queued by the
logging call and formatted and written by a listener thread, so the event loop
only builds a record and enqueues it. The formatter redacts anything shaped like
a key (``sk-...``, ``Bearer ...``) and any secret it was given, as a second line of
defence: no code is meant to log one in the first place.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import IO, Any

import orjson

from passgate.exchange import Exchange

ACCESS_LOGGER = "passgate.access"
REDACTED = "[redacted]"

_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+")
_SK_TOKEN = re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}")
_MIN_SECRET_LENGTH = 4


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


class _BackgroundHandler(QueueHandler):
    """Enqueues records unformatted; the listener thread formats and writes them."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord], listener: QueueListener):
        super().__init__(records)
        self._listener: QueueListener | None = listener

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The default prepare() formats on the calling thread (the event loop); the
        # listener's handler formats instead, and nothing crosses a process boundary.
        return record

    def close(self) -> None:
        """Stop the listener once all queued records are written."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
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
    # Created before the queue handler, so logging.shutdown() at exit closes the queue
    # handler (draining the queue into it) before closing it.
    output = logging.StreamHandler(stream if stream is not None else sys.stderr)
    output.setFormatter(JsonFormatter(secrets))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(records, output)
    root.addHandler(_BackgroundHandler(records, listener))
    root.setLevel(level.upper())
    listener.start()


def shutdown_logging() -> None:
    """Write every queued record and detach the handler ``configure_logging`` installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _BackgroundHandler):
            root.removeHandler(handler)
            handler.close()


def access_fields(ex: Exchange) -> dict[str, Any]:
    """The fields of one call's access line: no secret, no body."""
    principal = ex.principal
    usage = ex.usage
    latency = ex.latency_ms
    ttfb = ex.ttfb_ms
    return {
        "request_id": ex.request_id,
        "method": ex.method,
        "route": ex.route,
        "upstream_path": ex.upstream_path,
        "status": ex.status,
        "model": ex.model,
        "stream": ex.stream,
        "latency_ms": None if latency is None else round(latency, 3),
        "ttfb_ms": None if ttfb is None else round(ttfb, 3),
        "bytes_in": ex.bytes_in,
        "bytes_out": ex.bytes_out,
        "prompt_tokens": None if usage is None else usage.prompt_tokens,
        "completion_tokens": None if usage is None else usage.completion_tokens,
        "end_user": ex.end_user,
        "key_alias": None if principal is None else principal.key_alias,
        "user_id": None if principal is None else principal.user_id,
        "team_id": None if principal is None else principal.team_id,
        "cost": ex.cost,
        "interrupted": ex.interrupted,
        "error": ex.error,
        "upstream_request_id": ex.upstream_request_id,
    }


class RequestLogger:
    """Observer: one JSON access line per pass-through call on the ``passgate.access`` logger."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    async def finished(self, ex: Exchange) -> None:
        """Enqueue the access line; formatting and writing happen off the event loop."""
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        # makeRecord + handle skips Logger._log's caller lookup (a stack walk) per call.
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            "",
            0,
            "request",
            (),
            None,
            extra={"fields": access_fields(ex)},
        )
        logger.handle(record)
