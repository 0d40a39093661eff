"""Usage read from a relayed Server-Sent Events stream, chunk by chunk, in bounded memory.

Only the event being received is kept. Complete events are scanned for the provider's
usage keys (``"usage"`` in a chat stream's last chunk, ``"usageMetadata"``, ...) and only
those are parsed, each read by the provider's ``stream_usage`` with what was known before
it (a provider may report usage over several events); one more parse finds the model, from
the first event that names one. An event larger than the cap keeps only its head and tail,
which is where such an event's usage sits.
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

LF = 0x0A
CR = 0x0D
# an empty line ends an event; line ends are LF, CRLF or CR, so two line ends in a
# row always contain one of these pairs, and none of them occurs otherwise
_BOUNDARIES = (b"\n\n", b"\n\r", b"\r\r")


def _last_boundary(chunk: bytes) -> int:
    """Index just past the last event boundary in ``chunk``, or -1."""
    if b"\r" not in chunk:
        found = chunk.rfind(b"\n\n")
    else:
        found = max(chunk.rfind(pattern) for pattern in _BOUNDARIES)
    return -1 if found < 0 else found + 2


def _first_boundary(chunk: bytes) -> int:
    """Index just past the first event boundary in ``chunk``, or -1."""
    hits = [i for i in (chunk.find(pattern) for pattern in _BOUNDARIES) if i >= 0]
    return min(hits) + 2 if hits else -1


def _joins(previous: int, first: int) -> bool:
    """Whether the last byte of one chunk and the first of the next make a boundary."""
    return (previous == LF and first in (LF, CR)) or (previous == CR and first == CR)


def _data_of(event: bytes) -> bytes:
    """The joined ``data:`` lines of one event (line ends already normalised to LF)."""
    lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines)


class SseUsageReader:
    """Last usage and first model seen in an SSE stream."""

    __slots__ = ("_big", "_cap", "_last", "_model", "_parts", "_reading", "_size", "_usage")

    def __init__(self, reading: Reading, event_cap: int = 1024 * 1024) -> None:
        self._reading = reading
        self._cap = max(event_cap, HEAD_BYTES + TAIL_BYTES)
        self._parts: list[bytes] = []  # the event being received, when under the cap
        self._size = 0
        self._last = -1  # last byte seen, to find a boundary split across chunks
        self._big: Window | None = None  # the event being received, once over the cap
        self._usage: Usage | None = None
        self._model: str | None = None

    def feed(self, chunk: bytes) -> None:
        """See a relayed chunk."""
        if chunk and self._big is not None:
            chunk = self._feed_big(chunk)
        if chunk:
            self._feed_small(chunk)

    def result(self) -> tuple[Usage | None, str | None]:
        """The last usage seen and the model the stream named."""
        return self._usage, self._model

    def _feed_small(self, chunk: bytes) -> None:
        end = _last_boundary(chunk)
        if end < 0 and _joins(self._last, chunk[0]):
            end = 1
        self._last = chunk[-1]
        if end < 0:
            self._keep(chunk)
            return
        if self._parts:
            self._parts.append(chunk[:end])
            self._events(b"".join(self._parts))
            self._parts, self._size = [], 0
        else:
            self._events(chunk[:end])
        if end < len(chunk):
            self._keep(chunk[end:])

    def _keep(self, partial: bytes) -> None:
        """Add bytes of the event being received; past the cap, keep only head and tail."""
        self._parts.append(partial)
        self._size += len(partial)
        if self._size > self._cap:
            big = Window(HEAD_BYTES)
            for part in self._parts:
                big.add(part)
            self._big = big
            self._parts, self._size = [], 0

    def _feed_big(self, chunk: bytes) -> bytes:
        big = self._big
        assert big is not None
        end = 1 if _joins(big.last(), chunk[0]) else _first_boundary(chunk)
        if end < 0:
            big.add(chunk)
            return b""
        big.add(chunk[:end])
        self._big = None
        self._last = chunk[end - 1]
        self._fragments(big.head(), big.tail())
        return chunk[end:]

    def _events(self, complete: bytes) -> None:
        reading = self._reading
        keys = reading.keys
        usage_here = keys.has_usage(complete)
        model_here = self._model is None and keys.has_model(complete)
        if not (usage_here or model_here):
            return
        if b"\r" in complete:
            complete = complete.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        for event in complete.split(b"\n\n"):
            has_usage = usage_here and keys.has_usage(event)
            if not has_usage and not (self._model is None and keys.has_model(event)):
                continue
            if len(event) > self._cap:
                self._fragments(event[:HEAD_BYTES], event[-TAIL_BYTES:])
                continue
            obj = loads(_data_of(event))
            if has_usage:
                self._usage = reading.stream_usage(obj, self._usage)
            if self._model is None:
                self._model = reading.model(obj)

    def _fragments(self, head: bytes, tail: bytes) -> None:
        reading = self._reading
        if reading.keys.has_usage(tail):
            found = scan_usage(tail, reading, True, self._usage)
            if found is not None:
                self._usage = found
        if self._model is None and reading.keys.has_model(head + tail):
            self._model = scan_model(reading, head, tail)
