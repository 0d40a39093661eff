"""Usage read from a relayed stream of JSON lines (``application/x-ndjson`` and the like),
line by line, in bounded memory.

Some providers stream one JSON object per line instead of Server-Sent Events (a batch's
results, older streaming APIs). Only the line being received is kept; complete lines that
may hold a usage key are parsed and read by the provider's ``stream_usage``. A line larger
than the cap keeps only its head and tail.
"""

from __future__ import annotations

from passgate.accounting.usage import (
    HEAD_BYTES,
    TAIL_BYTES,
    Reading,
    Window,
    loads,
    scan_model,
    scan_usage,
)
from passgate.exchange import Usage

MEDIA_TYPES = frozenset(
    {
        b"application/x-ndjson",
        b"application/jsonl",
        b"application/x-jsonl",
        b"application/stream+json",
    }
)


class JsonLinesUsageReader:
    """The usage a stream of JSON lines reports, line by line, and the first model named."""

    __slots__ = ("_big", "_cap", "_model", "_parts", "_reading", "_size", "_usage")

    def __init__(self, reading: Reading, line_cap: int = 1024 * 1024) -> None:
        self._reading = reading
        self._cap = max(line_cap, HEAD_BYTES + TAIL_BYTES)
        self._parts: list[bytes] = []
        self._size = 0
        self._big: Window | None = None  # the line being received, once over the cap
        self._usage: Usage | None = None
        self._model: str | None = None

    def feed(self, chunk: bytes) -> None:
        """See a relayed chunk."""
        while chunk:
            end = chunk.find(b"\n")
            if end < 0:
                self._keep(chunk)
                return
            self._keep(chunk[:end])
            self._line_ended()
            chunk = chunk[end + 1 :]

    def result(self) -> tuple[Usage | None, str | None]:
        """The usage known so far and the model the stream named (a last line without its
        line end counts: the stream may end there)."""
        if self._parts or self._big is not None:
            self._line_ended()
        return self._usage, self._model

    def _keep(self, part: bytes) -> None:
        if not part:
            return
        if self._big is not None:
            self._big.add(part)
            return
        self._parts.append(part)
        self._size += len(part)
        if self._size > self._cap:
            big = Window(HEAD_BYTES)
            for kept in self._parts:
                big.add(kept)
            self._big, self._parts, self._size = big, [], 0

    def _line_ended(self) -> None:
        reading = self._reading
        keys = reading.keys
        big = self._big
        if big is not None:
            head, tail = big.head(), big.tail()
            self._big = None
            if keys.has_usage(tail):
                found = scan_usage(tail, reading, True, self._usage)
                if found is not None:
                    self._usage = found
            if self._model is None and keys.has_model(head + tail):
                self._model = scan_model(reading, head, tail)
            return
        line = b"".join(self._parts)
        self._parts, self._size = [], 0
        has_usage = keys.has_usage(line)
        if not has_usage and not (self._model is None and keys.has_model(line)):
            return
        obj = loads(line)
        if has_usage:
            self._usage = reading.stream_usage(obj, self._usage)
        if self._model is None:
            self._model = reading.model(obj)
