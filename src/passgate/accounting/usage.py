"""Usage read from a copy of the relayed response bytes.

Readers see the body in whatever chunks the relay gets and keep bounded memory.
A JSON body is parsed once, when its usage is asked for; a body larger than the
parse limit keeps only its head and tail, and the usage object (which providers
serialise last, after pages or segments that can weigh megabytes) is cut out of
the tail. What a body's usage means is its provider's to say (``ProviderSpec.usage``);
readers only find it. Malformed input yields no usage; it never raises.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from passgate.exchange import Metered, RequestInfo, Usage
from passgate.providers.base import ProviderSpec

HEAD_BYTES = 4096
TAIL_BYTES = 64 * 1024


class Reading:
    """What a reader needs of one metered call: its provider's usage functions, how the
    route is metered, the request's facts, and the provider's keys as patterns (compiled
    once per provider by ``Reading.keys``)."""

    __slots__ = ("info", "keys", "metered", "spec")

    def __init__(self, spec: ProviderSpec, keys: Keys, metered: Metered, info: RequestInfo) -> None:
        self.spec = spec
        self.keys = keys
        self.metered = metered
        self.info = info

    def usage(self, obj: Any) -> Usage | None:
        """The usage a whole parsed body reports."""
        return self.spec.usage(obj, self.metered, self.info)

    def stream_usage(self, obj: Any, so_far: Usage | None) -> Usage | None:
        """The usage known after one parsed stream event."""
        return self.spec.stream_usage(obj, so_far, self.metered)

    def model(self, obj: Any) -> str | None:
        """The model a parsed body or event names."""
        return self.spec.response_model(obj)


class Keys:
    """A provider's usage and model keys as byte patterns: for spotting them in raw bytes
    (``marks``) and for cutting their objects out of fragments of JSON."""

    __slots__ = ("model", "model_marks", "usage", "usage_marks")

    def __init__(self, spec: ProviderSpec) -> None:
        usage_names = b"|".join(re.escape(key) for key in spec.usage_keys)
        model_names = b"|".join(re.escape(key) for key in spec.model_keys)
        # a key outside any string: a quote inside a JSON string is always escaped
        self.usage = re.compile(rb'(?<!\\)"(' + usage_names + rb')"\s*:\s*\{')
        self.model = re.compile(rb'(?<!\\)"(?:' + model_names + rb')"\s*:\s*"([^"\\]{1,256})"')
        self.usage_marks = tuple(b'"' + key + b'"' for key in spec.usage_keys)
        self.model_marks = tuple(b'"' + key + b'"' for key in spec.model_keys)

    def has_usage(self, data: bytes) -> bool:
        """Whether ``data`` may hold a usage object (a cheap test before parsing)."""
        return any(mark in data for mark in self.usage_marks)

    def has_model(self, data: bytes) -> bool:
        """Whether ``data`` may name a model."""
        return any(mark in data for mark in self.model_marks)


def loads(data: bytes) -> Any:
    """Parse JSON, or None when it is not valid JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _object_end(data: bytes, start: int) -> int:
    """Index just past the JSON object opening at ``start``, or -1 when it is cut off."""
    depth = 0
    in_string = False
    escaped = False
    for index in range(start, len(data)):
        byte = data[index]
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x7B:
            depth += 1
        elif byte == 0x7D:
            depth -= 1
            if depth == 0:
                return index + 1
    return -1


def scan_usage(
    data: bytes, reading: Reading, stream: bool = False, so_far: Usage | None = None
) -> Usage | None:
    """The last complete usage object found in a fragment of JSON (the tail of a body), read
    as the provider reads ``{key: object}``: as a body, or as a stream event after
    ``so_far``."""
    for match in reversed(list(reading.keys.usage.finditer(data))):
        start = match.end() - 1
        end = _object_end(data, start)
        if end < 0:
            continue
        inner = loads(data[start:end])
        if inner is None:
            continue
        wrapped = {match.group(1).decode("ascii"): inner}
        found = reading.stream_usage(wrapped, so_far) if stream else reading.usage(wrapped)
        if found is not None:
            return found
    return None


def scan_model(reading: Reading, *fragments: bytes) -> str | None:
    """The first model named in fragments of JSON, tried in order."""
    for fragment in fragments:
        match = reading.keys.model.search(fragment)
        if match is not None:
            return match.group(1).decode("utf-8", "replace")
    return None


class Window:
    """Every byte up to ``limit``; past it, only the first and the last few KiB."""

    __slots__ = ("_head", "_parts", "_tail", "limit", "overflowed", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.overflowed = False
        self._parts: list[bytes] = []
        self._head = b""
        self._tail = bytearray(0)  # filled only past the limit

    def add(self, data: bytes) -> None:
        """Append bytes, dropping the middle once past the limit."""
        self.size += len(data)
        if not self.overflowed:
            if self.size <= self.limit:
                self._parts.append(data)
                return
            whole = b"".join(self._parts) + data
            self._parts = []
            self.overflowed = True
            self._head = whole[:HEAD_BYTES]
            self._tail = bytearray(whole[-TAIL_BYTES:])
            return
        if len(data) >= TAIL_BYTES:
            self._tail[:] = data[-TAIL_BYTES:]
            return
        self._tail += data
        if len(self._tail) > 2 * TAIL_BYTES:  # trim in bulk: amortised O(1) per byte
            del self._tail[:-TAIL_BYTES]

    def whole(self) -> bytes:
        """All bytes (only meaningful while not overflowed)."""
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def head(self) -> bytes:
        """The first bytes kept."""
        return self._head if self.overflowed else self.whole()[:HEAD_BYTES]

    def tail(self) -> bytes:
        """The last bytes kept."""
        if self.overflowed:
            return bytes(self._tail[-TAIL_BYTES:])
        return self.whole()[-TAIL_BYTES:]

    def last(self) -> int:
        """The last byte seen, or -1 when empty."""
        if self.overflowed:
            return self._tail[-1] if self._tail else -1
        return self._parts[-1][-1] if self._parts else -1


def usage_of_fragments(
    head: bytes, tail: bytes, reading: Reading
) -> tuple[Usage | None, str | None]:
    """Usage and model of a body of which only the head and tail were kept."""
    return scan_usage(tail, reading), scan_model(reading, head, tail)


class JsonUsageReader:
    """Usage of a JSON response body, parsed when asked for."""

    __slots__ = ("_limit", "_only", "_reading", "_window")

    def __init__(self, reading: Reading, limit: int = 1024 * 1024) -> None:
        self._reading = reading
        self._limit = limit
        # A buffered answer arrives whole, in one chunk: kept as it is, without a Window
        self._only: bytes | None = None
        self._window: Window | None = None

    def feed(self, chunk: bytes) -> None:
        """Keep a copy of the chunk (bounded)."""
        if not chunk:
            return
        window = self._window
        if window is None:
            if self._only is None and len(chunk) <= self._limit:
                self._only = chunk
                return
            window = self._window = Window(self._limit)
            if self._only is not None:
                window.add(self._only)
                self._only = None
        window.add(chunk)

    def result(self) -> tuple[Usage | None, str | None]:
        """Usage and model of the body seen so far."""
        reading = self._reading
        only = self._only
        if only is not None:
            obj = loads(only)
            if obj is not None:
                return reading.usage(obj), reading.model(obj)
            return usage_of_fragments(only[:HEAD_BYTES], only[-TAIL_BYTES:], reading)
        window = self._window
        if window is None:
            return None, None
        if window.overflowed:
            return usage_of_fragments(window.head(), window.tail(), reading)
        if window.size == 0:
            return None, None
        obj = loads(window.whole())
        if obj is None:  # cut off or not JSON: salvage a usage object if one is whole
            return usage_of_fragments(window.head(), window.tail(), reading)
        return reading.usage(obj), reading.model(obj)


class FixedUsageReader:
    """Usage known from the request alone (speech: characters of input)."""

    __slots__ = ("_usage",)

    def __init__(self, usage: Usage | None) -> None:
        self._usage = usage

    def feed(self, chunk: bytes) -> None:
        """The body carries nothing to count."""

    def result(self) -> tuple[Usage | None, str | None]:
        """The usage given at construction."""
        return self._usage, None
