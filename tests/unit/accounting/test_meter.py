"""The Meter: which reader each response gets, and the cost it settles on."""

from __future__ import annotations

import logging
import time

import orjson
import pytest

from passgate.accounting.meter import Meter
from passgate.accounting.pricing import load_catalogs
from passgate.accounting.sse import SseUsageReader
from passgate.accounting.usage import FixedUsageReader, JsonUsageReader
from passgate.exchange import Exchange, Usage
from passgate.providers.mistral import MistralSpec
from tests.support import fake_mistral_payloads as payloads

M = 1_000_000
JSON = b"application/json"
SSE = b"text/event-stream; charset=utf-8"


SPEC = MistralSpec()


def exchange(
    path: str,
    method: str = "POST",
    status: int = 200,
    model: str | None = None,
    *,
    annotations: bool = False,
    input_chars: int | None = None,
) -> Exchange:
    ex = Exchange(
        request_id="req-1",
        method=method,
        route="/mistral" + path,
        upstream_path=path,
        api_path=path,
        provider="mistral",
        start_time=time.time(),
        start=time.perf_counter(),
        status=status,
    )
    ex.info.model = model
    ex.info.annotations = annotations
    ex.info.input_chars = input_chars
    ex.metered = SPEC.metered(method, path, ex.info)  # as the relay sets it
    return ex


@pytest.fixture
def meter() -> Meter:
    return Meter(load_catalogs({"qwen2.5-7b-instruct": {"input_cost_per_token": 0}}))


@pytest.mark.parametrize(
    ("method", "path", "family"),
    [
        ("POST", "/v1/chat/completions", "tokens"),
        ("POST", "/v1/fim/completions", "tokens"),
        ("POST", "/v1/agents/completions", "tokens"),
        ("POST", "/v1/embeddings", "tokens"),
        ("POST", "/v1/moderations", "tokens"),
        ("POST", "/v1/chat/moderations", "tokens"),
        ("POST", "/v1/classifications", "tokens"),
        ("POST", "/v1/chat/classifications", "tokens"),
        ("POST", "/v1/conversations", "conversation"),
        ("POST", "/v1/conversations/conv_123", "conversation"),
        ("POST", "/v1/conversations/conv_123/restart", "conversation"),
        ("POST", "/v1/ocr", "ocr"),
        ("POST", "/v1/audio/transcriptions", "transcription"),
        ("POST", "/v1/audio/speech", "speech"),
        ("POST", "/v1/chat/completions/", "tokens"),
        ("GET", "/v1/chat/completions", None),
        ("GET", "/v1/conversations/conv_123", None),
        ("POST", "/v1/conversations/conv_123/history", None),
        ("POST", "/v1/files", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/batch/jobs", None),
        ("POST", "/v1/chat/completionsX", None),
    ],
)
def test_route_families(method: str, path: str, family: str | None) -> None:
    metered = SPEC.metered(method, path, exchange(path, method).info)
    assert (None if metered is None else metered.kind) == family


def test_readers_follow_the_route_and_content_type(meter: Meter) -> None:
    assert isinstance(meter.reader(exchange("/v1/chat/completions"), JSON), JsonUsageReader)
    assert isinstance(meter.reader(exchange("/v1/chat/completions"), SSE), SseUsageReader)
    assert isinstance(
        meter.reader(exchange("/v1/ocr"), b"application/json; charset=utf-8"), JsonUsageReader
    )
    assert isinstance(
        meter.reader(exchange("/v1/audio/speech", input_chars=5), b"audio/wav"), FixedUsageReader
    )
    assert meter.reader(exchange("/v1/files"), JSON) is None
    assert meter.reader(exchange("/v1/models", "GET"), JSON) is None
    assert meter.reader(exchange("/v1/chat/completions"), b"text/html") is None
    assert meter.reader(exchange("/v1/chat/completions", status=401), JSON) is None


def test_annotated_ocr_pages_when_the_request_asked_for_annotations(meter: Meter) -> None:
    ex = exchange("/v1/ocr", model="mistral-ocr-2512", annotations=True)
    reader = meter.reader(ex, JSON)
    assert reader is not None
    reader.feed(orjson.dumps(payloads.ocr("mistral-ocr-2512", 10)))
    ex.usage, _ = reader.result()
    meter.settle(ex)
    assert ex.usage == Usage(pages=3, annotated_pages=3)
    assert ex.cost == pytest.approx(3 * 3.0 / 1000)


def test_speech_is_priced_by_input_characters(meter: Meter) -> None:
    ex = exchange("/v1/audio/speech", model="voxtral-mini-tts-latest", input_chars=1200)
    reader = meter.reader(ex, JSON)
    assert reader is not None
    reader.feed(orjson.dumps(payloads.speech()))
    ex.usage, _ = reader.result()
    ex.model = ex.info.model
    meter.settle(ex)
    assert ex.usage == Usage(characters=1200)
    assert ex.cost == pytest.approx(1200 * 16.0 / M)


def test_a_chat_stream_is_priced_from_its_last_chunk(meter: Meter) -> None:
    ex = exchange("/v1/chat/completions", model="mistral-small-latest")
    reader = meter.reader(ex, SSE)
    assert reader is not None
    for chunk in payloads.chat_chunks("mistral-small-2603", "r", 4):
        reader.feed(b"data: " + orjson.dumps(chunk) + b"\n\n")
    ex.usage, response_model = reader.result()
    ex.model = ex.info.model or response_model
    meter.settle(ex)
    assert response_model == "mistral-small-2603"
    assert ex.priced
    assert ex.cost == pytest.approx(10 * 0.15 / M + 20 * 0.6 / M)


def test_an_unknown_model_has_no_cost_is_counted_and_logged_once(
    meter: Meter, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str | None] = []
    meter.on_unpriced = seen.append
    with caplog.at_level(logging.WARNING, "passgate.accounting"):
        for _ in range(3):
            ex = exchange("/v1/chat/completions", model="gpt-9")
            ex.model = "gpt-9"
            ex.usage = Usage(prompt_tokens=1, completion_tokens=1)
            meter.settle(ex)
            assert (ex.cost, ex.priced) == (None, False)
    assert meter.unpriced_total == 3
    assert seen == ["gpt-9"] * 3
    assert sum("gpt-9" in record.getMessage() for record in caplog.records) == 1


def test_a_failing_unpriced_callback_does_not_fail_settle(meter: Meter) -> None:
    def explode(model: str | None) -> None:
        raise RuntimeError("boom")

    meter.on_unpriced = explode
    ex = exchange("/v1/embeddings", model="nope")
    ex.usage = Usage(prompt_tokens=3)
    meter.settle(ex)
    assert (ex.cost, ex.priced, meter.unpriced_total) == (None, False, 1)


def test_a_custom_model_priced_zero(meter: Meter) -> None:
    ex = exchange("/v1/chat/completions", model="qwen2.5-7b-instruct")
    ex.usage = Usage(prompt_tokens=100, completion_tokens=100)
    meter.settle(ex)
    assert (ex.cost, ex.priced) == (0.0, True)


def test_routes_without_usage_cost_zero(meter: Meter) -> None:
    ex = exchange("/v1/files")
    meter.settle(ex)
    assert (ex.cost, ex.priced, ex.usage) == (0.0, True, None)


def test_missing_usage(meter: Meter) -> None:
    refused = exchange("/v1/chat/completions", status=429, model="mistral-small-latest")
    meter.settle(refused)
    assert refused.cost == 0.0  # the upstream refused: nothing consumed
    cut = exchange("/v1/chat/completions", model="mistral-small-latest")
    cut.interrupted = True
    meter.settle(cut)
    assert cut.cost is None  # usage never arrived: unknown, not zero
    unreadable = exchange("/v1/chat/completions", model="mistral-small-latest")
    meter.settle(unreadable)
    assert unreadable.cost is None
    free = exchange("/v1/moderations", model="mistral-moderation-latest")
    meter.settle(free)
    assert free.cost == 0.0  # a free model costs nothing whatever the usage
    assert meter.unpriced_total == 0
