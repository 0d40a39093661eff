"""Anthropic's usage shapes, normalised: every input token in prompt_tokens, cache reads and
writes (one-hour writes apart) counted, streams merged, batch results summed."""

from __future__ import annotations

from typing import Any

import pytest

from passgate.accounting.pricing import load_catalogs
from passgate.exchange import RequestInfo, Usage
from passgate.providers.anthropic import (
    BATCH_RESULTS,
    COUNT_TOKENS,
    MESSAGES,
    AnthropicSpec,
    message_usage,
)

SPEC = AnthropicSpec()
INFO = RequestInfo()


def test_input_tokens_leave_out_the_cache_and_prompt_tokens_count_it() -> None:
    usage = {
        "input_tokens": 20,
        "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 60, "ephemeral_1h_input_tokens": 40},
        "output_tokens": 15,
    }
    assert message_usage(usage) == Usage(
        prompt_tokens=420,
        completion_tokens=15,
        cached_tokens=300,
        cache_write_tokens=100,
        cache_write_1h_tokens=40,
    )


@pytest.mark.parametrize(
    ("method", "path", "metered"),
    [
        ("POST", "/v1/messages", MESSAGES),
        ("POST", "/v1/messages/", MESSAGES),
        ("POST", "/v1/messages/count_tokens", COUNT_TOKENS),
        ("GET", "/v1/messages/batches/msgbatch_1/results", BATCH_RESULTS),
        ("POST", "/v1/messages/batches", None),
        ("GET", "/v1/messages/batches/msgbatch_1", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/files", None),
    ],
)
def test_metered_routes(method: str, path: str, metered: object) -> None:
    assert SPEC.metered(method, path, INFO) is metered


def test_a_stream_merges_message_start_and_message_delta() -> None:
    start = {
        "type": "message_start",
        "message": {
            "model": "claude-sonnet-4-6",
            "usage": {"input_tokens": 20, "cache_read_input_tokens": 300, "output_tokens": 1},
        },
    }
    so_far = SPEC.stream_usage(start, None, MESSAGES)
    assert so_far == Usage(prompt_tokens=320, completion_tokens=1, cached_tokens=300)
    assert SPEC.stream_usage({"type": "ping"}, so_far, MESSAGES) is so_far
    delta = {"type": "message_delta", "usage": {"output_tokens": 15}}
    assert SPEC.stream_usage(delta, so_far, MESSAGES) == Usage(
        prompt_tokens=320, completion_tokens=15, cached_tokens=300
    )
    # newer API versions repeat the cumulative input side in message_delta
    full = {
        "type": "message_delta",
        "usage": {"input_tokens": 20, "cache_read_input_tokens": 300, "output_tokens": 15},
    }
    assert SPEC.stream_usage(full, so_far, MESSAGES) == Usage(
        prompt_tokens=320, completion_tokens=15, cached_tokens=300
    )
    assert SPEC.response_model(start) == "claude-sonnet-4-6"


def test_batch_result_lines_add_up() -> None:
    line = {
        "result": {
            "type": "succeeded",
            "message": {"usage": {"input_tokens": 10, "output_tokens": 5}},
        }
    }
    errored = {"result": {"type": "errored", "error": {"type": "overloaded_error"}}}
    total = None
    for obj in (line, errored, line):
        total = SPEC.stream_usage(obj, total, BATCH_RESULTS)
    assert total == Usage(
        prompt_tokens=20,
        completion_tokens=10,
        cached_tokens=0,
        cache_write_tokens=0,
        cache_write_1h_tokens=0,
    )


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "x",
        {"usage": None},
        {"usage": {"input_tokens": "9"}},
        {"type": "message_start"},
        {"type": "message_start", "message": []},
        {"result": 3},
        {"usage": {"output_tokens": -1}},
    ],
)
def test_malformed_answers_report_nothing_and_never_raise(obj: Any) -> None:
    assert SPEC.usage(obj, MESSAGES, INFO) is None
    assert SPEC.stream_usage(obj, None, MESSAGES) is None
    assert SPEC.stream_usage(obj, None, BATCH_RESULTS) is None


def test_one_hour_cache_writes_have_their_own_price() -> None:
    price = load_catalogs().lookup("anthropic", "claude-sonnet-4-6")
    assert price is not None
    usage = Usage(
        prompt_tokens=420,
        completion_tokens=15,
        cached_tokens=300,
        cache_write_tokens=100,
        cache_write_1h_tokens=40,
    )
    expected = (20 * 3.0 + 15 * 15.0 + 300 * 0.3 + 60 * 3.75 + 40 * 6.0) / 1e6
    assert price.cost(usage) == pytest.approx(expected, rel=1e-12)


def test_the_catalog_names_its_source_and_date() -> None:
    catalog = load_catalogs().catalog("anthropic")
    for model in catalog.models():
        price = catalog.lookup(model)
        assert price is not None and price.source and price.date == "2026-12-07", model
