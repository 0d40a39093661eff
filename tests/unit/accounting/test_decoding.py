"""Usage read from gzip and deflate bodies the relay passes through compressed."""

from __future__ import annotations

import gzip
import os
import tracemalloc
import zlib

import orjson
import pytest

from passgate.accounting.decoding import InflatingReader, decoded
from passgate.accounting.sse import SseUsageReader
from passgate.accounting.usage import FixedUsageReader, JsonUsageReader
from passgate.exchange import Usage
from tests.support import fake_mistral_payloads as payloads
from tests.support.readings import mistral_reading

TOKENS = Usage(prompt_tokens=10, completion_tokens=20, total_tokens=30)
BODY = orjson.dumps(payloads.chat_completion("mistral-small-latest", "r1"))


def feed_all(reader: object, data: bytes, step: int) -> None:
    assert reader is not None
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])  # type: ignore[attr-defined]


@pytest.mark.parametrize("encoding", [b"gzip", b"x-gzip", b"GZIP", b"identity, gzip"])
def test_a_gzip_json_body_in_any_chunking(encoding: bytes) -> None:
    packed = gzip.compress(BODY)
    for step in (1, 5, 64, len(packed)):
        reader = decoded(JsonUsageReader(mistral_reading()), encoding)
        assert isinstance(reader, InflatingReader)
        feed_all(reader, packed, step)
        assert reader.result() == (TOKENS, "mistral-small-latest")


def test_a_deflate_sse_stream() -> None:
    stream = b"".join(
        b"data: " + orjson.dumps(chunk) + b"\n\n"
        for chunk in payloads.chat_chunks("codestral-latest", "r", 5)
    )
    reader = decoded(SseUsageReader(mistral_reading()), b"deflate")
    feed_all(reader, zlib.compress(stream), 7)
    assert reader is not None and reader.result() == (TOKENS, "codestral-latest")


def test_identity_and_absent_codings_read_the_bytes_as_they_are() -> None:
    inner = JsonUsageReader(mistral_reading())
    assert decoded(inner, None) is inner
    assert decoded(inner, b"") is inner
    assert decoded(inner, b"identity") is inner
    assert decoded(None, b"gzip") is None


def test_codings_we_cannot_undo_give_no_usage() -> None:
    for coding in (b"br", b"zstd", b"gzip, gzip", b"compress"):
        reader = decoded(JsonUsageReader(mistral_reading()), coding)
        assert reader is not None
        reader.feed(BODY)
        assert reader.result() == (None, None)


def test_speech_usage_does_not_depend_on_the_body() -> None:
    speech = FixedUsageReader(Usage(characters=3))
    assert decoded(speech, b"br") is speech


def test_corrupt_data_gives_no_usage_and_never_raises() -> None:
    reader = decoded(JsonUsageReader(mistral_reading()), b"gzip")
    assert reader is not None
    reader.feed(os.urandom(4096))
    reader.feed(gzip.compress(BODY))
    assert reader.result() == (None, None)


def test_a_compression_bomb_inflates_in_bounded_memory() -> None:
    bomb_body = b'{"model": "m", "data": "' + b"0" * (40 * 1024 * 1024) + b'", "usage": '
    packed = gzip.compress(bomb_body + orjson.dumps(payloads.usage()) + b"}", compresslevel=9)
    assert len(packed) < 256 * 1024
    reader = decoded(JsonUsageReader(mistral_reading()), b"gzip")
    tracemalloc.start()
    try:
        feed_all(reader, packed, 65536)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader is not None and reader.result() == (TOKENS, "m")
    assert peak < 8 * 1024 * 1024
