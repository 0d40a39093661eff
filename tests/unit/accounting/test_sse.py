"""Usage read from relayed SSE streams: any chunking, any line ending, bounded memory."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import pytest

from passgate.accounting.sse import SseUsageReader
from passgate.exchange import Usage
from tests.support import fake_mistral_payloads as payloads
from tests.support.readings import mistral_reading

TOKENS = Usage(prompt_tokens=10, completion_tokens=20, total_tokens=30)
MiB = 1024 * 1024


def chat_stream(count: int = 6, model: str = "mistral-small-latest") -> bytes:
    events = [
        b"data: " + orjson.dumps(c) + b"\n\n" for c in payloads.chat_chunks(model, "r", count)
    ]
    return b"".join(events) + b"data: [DONE]\n\n"


def named_stream(events: Iterable[tuple[str, Any]]) -> bytes:
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for name, data in events
    )


def newline(stream: bytes, ending: bytes) -> bytes:
    return stream.replace(b"\n", ending)


def read(chunks: Iterable[bytes], annotated: bool = False, cap: int = MiB) -> Any:
    reader = SseUsageReader(mistral_reading(annotated), cap)
    for chunk in chunks:
        reader.feed(chunk)
    return reader.result()


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_a_chat_stream_split_at_every_byte_offset(ending: bytes) -> None:
    stream = newline(chat_stream(), ending)
    for cut in range(len(stream) + 1):
        assert read([stream[:cut], stream[cut:]]) == (TOKENS, "mistral-small-latest"), cut


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_a_stream_fed_byte_by_byte(ending: bytes) -> None:
    stream = newline(chat_stream(3), ending)
    assert read(stream[i : i + 1] for i in range(len(stream))) == (TOKENS, "mistral-small-latest")


def test_random_three_way_splits_with_mixed_line_endings() -> None:
    pieces = []
    for index, event in enumerate(chat_stream(5).split(b"\n\n")[:-1]):
        ending = (b"\n", b"\r\n", b"\r")[index % 3]
        pieces.append(event + ending + ending)
    stream = b"".join(pieces)
    rng = random.Random(1234)
    for _ in range(2000):
        a, b = sorted(rng.randrange(len(stream) + 1) for _ in range(2))
        assert read([stream[:a], stream[a:b], stream[b:]])[0] == TOKENS


def test_a_conversation_stream_takes_the_done_event_usage() -> None:
    stream = named_stream(payloads.conversation_events("conv_1", "mistral-medium-latest", 5))
    for cut in range(0, len(stream) + 1, 3):
        assert read([stream[:cut], stream[cut:]]) == (TOKENS, "mistral-medium-latest")


def test_a_transcription_stream_takes_the_done_event_usage() -> None:
    stream = named_stream(payloads.transcription_events("voxtral-mini-latest", 4))
    expected = Usage(prompt_tokens=10, completion_tokens=20, total_tokens=30, audio_seconds=12.0)
    assert read([stream]) == (expected, "voxtral-mini-latest")


def test_a_responses_api_stream_takes_the_completed_event() -> None:
    created = {"type": "response.created", "response": {"model": "m-1", "usage": None}}
    delta = {"type": "response.output_text.delta", "delta": "usage"}
    completed = {
        "type": "response.completed",
        "response": {"model": "m-1", "usage": {"input_tokens": 3, "output_tokens": 4}},
    }
    events: list[dict[str, Any]] = [created, delta, completed]
    stream = named_stream([(e["type"], e) for e in events])
    assert read([stream]) == (Usage(prompt_tokens=3, completion_tokens=4), "m-1")


def test_a_stream_cut_before_its_usage_has_none_but_names_the_model() -> None:
    stream = chat_stream(6)
    cut = stream.index(b'"usage"') - 20
    assert read([stream[:cut]]) == (None, "mistral-small-latest")


def test_the_last_usage_seen_wins() -> None:
    first = {"model": "a", "usage": {"prompt_tokens": 1, "total_tokens": 1}}
    second = {"model": "b", "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    stream = b"data: " + orjson.dumps(first) + b"\n\ndata: " + orjson.dumps(second) + b"\n\n"
    assert read([stream]) == (Usage(prompt_tokens=2, total_tokens=2), "a")


def test_sse_syntax_variants() -> None:
    body = orjson.dumps({"model": "m", "usage": payloads.usage()})
    half = len(body) // 2
    stream = (
        b": keep-alive comment\n\n"
        b"retry: 1000\nid: 7\nevent: chunk\n"
        b"data:" + body[:half] + b"\ndata:" + body[half:] + b"\n\n"  # no space, two lines
    )
    # a data value split over two lines joins with a newline: still valid JSON here
    assert read([stream]) == (TOKENS, "m")


def test_an_event_without_a_final_blank_line_is_not_counted() -> None:
    body = orjson.dumps({"model": "m", "usage": payloads.usage()})
    assert read([b"data: " + body + b"\n"]) == (None, None)


@pytest.mark.parametrize(
    "stream",
    [
        b"data: {not json\n\n",
        b'data: {"usage": "lots"}\n\n',
        b'data: {"usage": {"prompt_tokens": -1}}\n\n',
        b'data: ["usage"]\n\n',
        b"data: [DONE]\n\n",
        b'event: x\ndata: "model"\n\n',
        b"\xff\xfe\n\n\r\r\x00",
        b'data: {"usage_info": 3, "model": null}\n\n',
    ],
)
def test_malformed_events_give_no_usage_and_never_raise(stream: bytes) -> None:
    for cut in range(len(stream) + 1):
        assert read([stream[:cut], stream[cut:]]) == (None, None)


def test_an_oversize_event_is_dropped_and_the_stream_goes_on() -> None:
    huge = {"type": "message.output.delta", "model": "m", "content": "z" * 300_000}
    stream = named_stream([("delta", huge)]) + chat_stream(2, model="other")
    usage, model = read([stream[i : i + 4096] for i in range(0, len(stream), 4096)], cap=100_000)
    assert usage == TOKENS
    assert model == "m"  # from the head kept of the oversize event


def test_an_oversize_event_keeps_the_usage_at_its_end() -> None:
    # transcription.done carries the whole text and segments before its usage
    done = {**payloads.transcription("voxtral-mini-latest"), "text": "w " * 2_000_000}
    stream = named_stream([("transcription.done", done)])
    usage, model = read([stream[i : i + 65536] for i in range(0, len(stream), 65536)])
    assert usage is not None and usage.audio_seconds == 12.0
    assert model == "voxtral-mini-latest"


def _chunks(total: int, content: bytes, size: int) -> Iterator[bytes]:
    """Whole copies of ``content`` (about ``total`` bytes), re-cut into pieces of ``size``."""
    copies = total // len(content)
    pending = b""
    for _ in range(copies):
        pending += content
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


def _peak(chunks: Iterable[bytes], tail: bytes) -> tuple[int, Any]:
    reader = SseUsageReader(mistral_reading())
    tracemalloc.start()
    try:
        for piece in chunks:
            reader.feed(piece)
        reader.feed(tail)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, reader.result()


def test_fifty_megabytes_of_events_use_bounded_memory() -> None:
    event = b"data: " + orjson.dumps(next(payloads.chat_chunks("m", "r", 2))) + b"\n\n"
    tail = b"data: " + orjson.dumps({"model": "m", "usage": payloads.usage()}) + b"\n\n"
    peak, result = _peak(_chunks(50 * MiB, event, 65_537), tail)
    assert result == (TOKENS, "m")
    assert peak < 2 * MiB


def test_one_fifty_megabyte_event_uses_bounded_memory() -> None:
    head = b'data: {"type":"transcription.done","model":"v","text":"'
    tail = b'","usage":{"prompt_audio_seconds":5,"prompt_tokens":1}}\n\n'
    chunks = _chunks(50 * MiB, b"x" * 1000, 65_536)
    peak, result = _peak((piece for part in ([head], chunks) for piece in part), tail)
    assert result == (Usage(prompt_tokens=1, audio_seconds=5.0), "v")
    assert peak < 3 * MiB


def test_fifty_megabytes_without_any_newline_use_bounded_memory() -> None:
    peak, result = _peak(_chunks(50 * MiB, b"garbage" * 100, 65_536), b"")
    assert result == (None, None)
    assert peak < 3 * MiB
