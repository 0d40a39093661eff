"""Usage read from a copy of the relayed response bytes.

Readers see the body in whatever chunks the relay gets and keep bounded memory.
A JSON body is parsed once, when its usage is asked for; a body larger than the
parse limit keeps only its head and tail, and the usage object (which Mistral
serialises last, after pages or segments that can weigh megabytes) is cut out of
the tail. Malformed input yields no usage; it never raises.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from passgate.exchange import Usage

HEAD_BYTES = 4096
MAX_COUNT = 2**31 - 1
TAIL_BYTES = 64 * 1024

# a key outside any string: a quote inside a JSON string is always escaped
_USAGE_KEY = re.compile(rb'(?<!\\)"(usage_info|usage)"\s*:\s*\{')
_MODEL_KEY = re.compile(rb'(?<!\\)"model"\s*:\s*"([^"\\]{1,256})"')


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and value > MAX_COUNT:
        return None  # float() of a huge int raises; no real usage is that large
    number = float(value)
    return number if 0 <= number < math.inf else None


def _count(value: Any) -> int | None:
    if type(value) is int and 0 <= value <= MAX_COUNT:  # the usual case, checked first
        return value
    number = _seconds(value)
    # the spend log stores counts in 32-bit integer columns
    return None if number is None or number > MAX_COUNT else int(number)


def _cached_tokens(usage: dict[str, Any]) -> int | None:
    # chat: prompt_tokens_details (and the spec's prompt_token_details spelling);
    # some Mistral responses: num_cached_tokens; responses API: input_tokens_details
    for name in ("prompt_tokens_details", "prompt_token_details", "input_tokens_details"):
        details = usage.get(name)
        if isinstance(details, dict):
            cached = _count(details.get("cached_tokens"))
            if cached is not None:
                return cached
    for name in ("num_cached_tokens", "prompt_cache_hit_tokens"):
        cached = _count(usage.get(name))
        if cached is not None:
            return cached
    return None


def token_usage(usage: Any) -> Usage | None:
    """A ``usage`` object (chat, FIM, embeddings, conversations, transcription, responses)."""
    if not isinstance(usage, dict):
        return None
    if len(usage) == 3:
        # Most answers (chat, FIM, embeddings): three counts and nothing else, so nothing
        # cached and no audio. Read at once, without the general path below, which costs more.
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        total = usage.get("total_tokens")
        if (
            type(prompt) is int
            and type(completion) is int
            and type(total) is int
            and 0 <= prompt <= MAX_COUNT
            and 0 <= completion <= MAX_COUNT
            and 0 <= total <= MAX_COUNT
        ):
            return Usage(prompt, completion, None, total)
    prompt = _count(usage.get("prompt_tokens"))
    if prompt is None:
        prompt = _count(usage.get("input_tokens"))
    completion = _count(usage.get("completion_tokens"))
    if completion is None:
        completion = _count(usage.get("output_tokens"))
    total = _count(usage.get("total_tokens"))
    seconds = _seconds(usage.get("prompt_audio_seconds"))
    if prompt is None and completion is None and total is None and seconds is None:
        return None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=_cached_tokens(usage),
        total_tokens=total,
        audio_seconds=seconds,
    )


def page_usage(info: Any, annotated: bool) -> Usage | None:
    """An OCR ``usage_info`` object; every page is annotated when the request asked for it."""
    if not isinstance(info, dict):
        return None
    pages = _count(info.get("pages_processed"))
    if pages is None:
        return None
    return Usage(pages=pages, annotated_pages=pages if annotated else 0)


def usage_from(obj: Any, annotated: bool = False) -> Usage | None:
    """The usage a parsed response body or SSE event reports, if any."""
    if not isinstance(obj, dict):
        return None
    if "usage_info" in obj:
        found = page_usage(obj["usage_info"], annotated)
        if found is not None:
            return found
    if "usage" in obj:
        return token_usage(obj["usage"])
    nested = obj.get("response")  # responses API stream: response.completed
    if isinstance(nested, dict) and "usage" in nested:
        return token_usage(nested["usage"])
    return None


def model_from(obj: Any) -> str | None:
    """The model a parsed response body or SSE event names, if any."""
    if not isinstance(obj, dict):
        return None
    model = obj.get("model")
    if isinstance(model, str) and model:
        return model
    nested = obj.get("response")
    if isinstance(nested, dict):
        model = nested.get("model")
        if isinstance(model, str) and model:
            return model
    outputs = obj.get("outputs")  # conversations name the model on each output entry
    if isinstance(outputs, list):
        for entry in outputs:
            if isinstance(entry, dict):
                model = entry.get("model")
                if isinstance(model, str) and model:
                    return model
    return None


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


def scan_usage(data: bytes, annotated: bool = False) -> Usage | None:
    """The last complete usage object found in a fragment of JSON (the tail of a body)."""
    for match in reversed(list(_USAGE_KEY.finditer(data))):
        start = match.end() - 1
        end = _object_end(data, start)
        if end < 0:
            continue
        inner = loads(data[start:end])
        found = (
            page_usage(inner, annotated) if match.group(1) == b"usage_info" else token_usage(inner)
        )
        if found is not None:
            return found
    return None


def scan_model(*fragments: bytes) -> str | None:
    """The first ``"model": "..."`` found in fragments of JSON, tried in order."""
    for fragment in fragments:
        match = _MODEL_KEY.search(fragment)
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
    head: bytes, tail: bytes, annotated: bool
) -> tuple[Usage | None, str | None]:
    """Usage and model of a body of which only the head and tail were kept."""
    return scan_usage(tail, annotated), scan_model(head, tail)


class JsonUsageReader:
    """Usage of a JSON response body, parsed when asked for."""

    __slots__ = ("_annotated", "_limit", "_only", "_window")

    def __init__(self, annotated: bool = False, limit: int = 1024 * 1024) -> None:
        self._annotated = annotated
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
        only = self._only
        if only is not None:
            obj = loads(only)
            if obj is not None:
                return usage_from(obj, self._annotated), model_from(obj)
            return usage_of_fragments(only[:HEAD_BYTES], only[-TAIL_BYTES:], self._annotated)
        window = self._window
        if window is None:
            return None, None
        if window.overflowed:
            return usage_of_fragments(window.head(), window.tail(), self._annotated)
        if window.size == 0:
            return None, None
        obj = loads(window.whole())
        if obj is None:  # cut off or not JSON: salvage a usage object if one is whole
            return usage_of_fragments(window.head(), window.tail(), self._annotated)
        return usage_from(obj, self._annotated), model_from(obj)


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
