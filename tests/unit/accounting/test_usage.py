"""Usage read from JSON response bodies, as the relay hands them over in chunks."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from passgate.accounting.usage import FixedUsageReader, JsonUsageReader, scan_usage
from passgate.exchange import Usage
from passgate.providers.mistral import model_from, usage_from
from passgate.providers.shapes import token_usage
from tests.support import fake_mistral_payloads as payloads
from tests.support.readings import mistral_reading

TOKENS = Usage(prompt_tokens=10, completion_tokens=20, total_tokens=30)
INPUT_ONLY = Usage(prompt_tokens=10, completion_tokens=0, total_tokens=10)


def read(body: bytes, annotated: bool = False, limit: int = 1024 * 1024, step: int = 0) -> Any:
    reader = JsonUsageReader(mistral_reading(annotated), limit)
    if step:
        for start in range(0, len(body), step):
            reader.feed(body[start : start + step])
    else:
        reader.feed(body)
    return reader.result()


CASES = [
    ("chat", payloads.chat_completion("mistral-small-latest", "r1"), False, TOKENS),
    ("embeddings", payloads.embeddings("mistral-embed", "r2", 2), False, INPUT_ONLY),
    ("moderation", payloads.moderation("mistral-moderation-latest", "r3"), False, INPUT_ONLY),
    ("classification", payloads.classification("ft:classifier", "r4"), False, INPUT_ONLY),
    ("ocr", payloads.ocr("mistral-ocr-latest", 1234), False, Usage(pages=3, annotated_pages=0)),
    (
        "ocr-annotated",
        payloads.ocr("mistral-ocr-latest", 1),
        True,
        Usage(pages=3, annotated_pages=3),
    ),
    (
        "transcription",
        payloads.transcription("voxtral-mini-latest"),
        False,
        Usage(prompt_tokens=10, completion_tokens=20, total_tokens=30, audio_seconds=12.0),
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "annotated", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_each_endpoint_shape(name: str, body: Any, annotated: bool, expected: Usage) -> None:
    usage, model = read(orjson.dumps(body), annotated)
    assert usage == expected
    assert model == body["model"]


def test_a_conversation_names_its_model_on_the_output_entries() -> None:
    body = payloads.conversation("conv_1", "mistral-medium-latest")
    assert read(orjson.dumps(body)) == (TOKENS, "mistral-medium-latest")


def test_the_responses_api_input_and_output_tokens() -> None:
    body = {
        "id": "resp_1",
        "model": "mistral-small-latest",
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 2},
            "total_tokens": 17,
        },
    }
    expected = Usage(
        prompt_tokens=12, completion_tokens=5, cached_tokens=4, total_tokens=17, reasoning_tokens=2
    )
    assert read(orjson.dumps(body)) == (expected, "mistral-small-latest")


@pytest.mark.parametrize(
    "extra",
    [
        {"prompt_tokens_details": {"cached_tokens": 7, "audio_tokens": 0}},
        {"prompt_token_details": {"cached_tokens": 7}},
        {"num_cached_tokens": 7},
        {"prompt_cache_hit_tokens": 7},
    ],
)
def test_cached_tokens_in_every_spelling(extra: dict[str, Any]) -> None:
    body = {"model": "m", "usage": {**payloads.usage(), **extra}}
    usage, _ = read(orjson.dumps(body))
    assert usage is not None and usage.cached_tokens == 7 and usage.prompt_tokens == 10


def test_any_chunking_gives_the_same_answer() -> None:
    body = orjson.dumps(payloads.chat_completion("codestral-latest", "r9"))
    for step in (1, 2, 3, 7, 64):
        assert read(body, step=step) == (TOKENS, "codestral-latest")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"usage"',
        b"null",
        b"12",
        b'{"usage": null}',
        b'{"usage": "10 tokens"}',
        b'{"usage": {"prompt_tokens": "10"}}',
        b'{"usage": {"prompt_tokens": -3, "completion_tokens": true}}',
        b'{"usage_info": {"pages_processed": "three"}}',
        b'{"usage_info": [], "usage": []}',
        b'{"model": 42, "outputs": [1, null, {"model": null}]}',
        b'{"usage": {"prompt_tokens": 1e400}}',
        b'{"usage": {"prompt_tokens": 1e30, "total_tokens": 99999999999}}',
        b'{"error": {"message": "Invalid model", "type": "invalid_model"}}',
    ],
)
def test_malformed_bodies_give_no_usage_and_never_raise(body: bytes) -> None:
    usage, model = read(body)
    assert usage is None
    assert model is None


def test_an_error_body_gives_no_usage() -> None:
    body = {"object": "error", "message": "Unauthorized", "type": "auth", "code": "1"}
    assert read(orjson.dumps(body)) == (None, None)


def test_a_large_ocr_body_keeps_its_usage_from_the_tail() -> None:
    # include_image_base64 makes OCR bodies megabytes long; the usage comes last
    body = payloads.ocr("mistral-ocr-latest", 99)
    image = base64.b64encode(bytes(range(256)) * 20_000).decode()
    body["pages"][0]["images"] = [{"id": "img-0", "image_base64": image}]
    raw = orjson.dumps(body)
    assert len(raw) > 5_000_000
    reader = JsonUsageReader(mistral_reading(annotated=True), limit=1024 * 1024)
    for start in range(0, len(raw), 65536):
        reader.feed(raw[start : start + 65536])
    usage, model = reader.result()
    assert usage == Usage(pages=3, annotated_pages=3)
    assert model == "mistral-ocr-latest"


def test_an_oversize_body_without_usage_in_its_tail_gives_none() -> None:
    body = {"usage": payloads.usage(), "model": "m", "data": "x" * 300_000}
    usage, model = read(orjson.dumps(body), limit=1000)
    assert usage is None
    assert model == "m"  # found in the head


def test_a_usage_key_inside_a_string_is_not_taken_for_the_usage() -> None:
    text = 'see "usage": {"prompt_tokens": 999} here'
    body = {"model": "m", "data": "y" * 200_000, "content": text}
    assert read(orjson.dumps(body), limit=1000)[0] is None
    assert scan_usage(orjson.dumps({"content": text}), mistral_reading()) is None


def test_a_truncated_body_salvages_a_complete_usage_object() -> None:
    raw = orjson.dumps(payloads.chat_completion("m", "r"))
    cut = raw[: raw.index(b'"choices"')]  # cut after the usage object
    assert read(cut)[0] == TOKENS
    assert read(raw[: raw.index(b'"total_tokens"')])[0] is None  # usage itself cut


def test_absurd_numbers_are_not_usage() -> None:
    assert usage_from({"usage": {"prompt_tokens": 10**400, "total_tokens": float("inf")}}) is None
    assert usage_from({"usage": {"prompt_audio_seconds": float("nan")}}) is None


THREE_COUNTS = [
    {"prompt_tokens": 12, "completion_tokens": 24, "total_tokens": 36},
    {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    {"prompt_tokens": 2**31 - 1, "completion_tokens": 1, "total_tokens": 2**31},
    {"prompt_tokens": -1, "completion_tokens": 2, "total_tokens": 1},
    {"prompt_tokens": True, "completion_tokens": 2, "total_tokens": 3},
    {"prompt_tokens": 1.0, "completion_tokens": 2, "total_tokens": 3},
    {"prompt_tokens": None, "completion_tokens": 2, "total_tokens": 3},
    {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
    {"prompt_tokens": 1, "num_cached_tokens": 1, "total_tokens": 3},
    {"prompt_tokens": 1, "completion_tokens": 2, "prompt_audio_seconds": 3},
]


@pytest.mark.parametrize("usage", THREE_COUNTS)
def test_three_key_usage_reads_as_the_general_path_reads_it(usage: dict[str, Any]) -> None:
    # a fourth key that names nothing sends the same counts down the general path
    assert token_usage(usage) == token_usage({**usage, "request_count": None})


def test_usage_from_and_model_from_on_parsed_objects() -> None:
    assert usage_from({"usage_info": {"pages_processed": 2}}, annotated=True) == Usage(
        pages=2, annotated_pages=2
    )
    assert usage_from({"response": {"usage": {"input_tokens": 1, "output_tokens": 2}}}) == Usage(
        prompt_tokens=1, completion_tokens=2
    )
    assert model_from({"response": {"model": "x"}}) == "x"
    assert model_from([]) is None


def test_speech_usage_comes_from_the_request() -> None:
    reader = FixedUsageReader(Usage(characters=42))
    reader.feed(orjson.dumps(payloads.speech()))
    assert reader.result() == (Usage(characters=42), None)
