"""A finished call as a spend row: every field, sized to its column, nothing secret."""

from __future__ import annotations

import time
from datetime import UTC

import pytest

from passgate.accounting.rows import clean, spend_row
from passgate.exchange import Exchange, Usage
from passgate.principal import OPEN, Principal
from tests.support.exchanges import exchange


def finished(**fields: object) -> Exchange:
    now = time.perf_counter()
    ex = exchange("/mistral/v1/ocr", start_time=1_700_000_000.25, start=now)
    ex.status, ex.first_byte, ex.end = 200, now + 0.5, now + 1.5
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex


def test_every_field_of_the_row() -> None:
    principal = Principal(kind="virtual", token="ab" * 32, key_alias="ci", user_id="u", team_id="t")
    ex = finished(
        principal=principal,
        end_user="alice",
        usage=Usage(pages=4, annotated_pages=4),
        cost=0.02,
        tags=["team:x", "batch"],
        stream=False,
    )
    ex.info.model = "mistral-ocr-latest"
    row = spend_row(ex)
    assert row["start_time"].tzinfo is UTC
    assert row["start_time"].timestamp() == pytest.approx(1_700_000_000.25)
    assert (row["first_byte_time"] - row["start_time"]).total_seconds() == pytest.approx(0.5)
    assert (row["end_time"] - row["start_time"]).total_seconds() == pytest.approx(1.5)
    assert (row["latency_ms"], row["ttfb_ms"]) == (pytest.approx(1500), pytest.approx(500))
    assert (row["token"], row["key_alias"], row["user_id"], row["team_id"]) == (
        "ab" * 32,
        "ci",
        "u",
        "t",
    )
    assert (row["model"], row["pages"], row["annotated_pages"], row["cost"]) == (
        "mistral-ocr-latest",
        4,
        4,
        0.02,
    )
    assert row["prompt_tokens"] is None and row["tags"] == ["team:x", "batch"]


def test_a_call_without_principal_usage_or_response() -> None:
    row = spend_row(finished(first_byte=None, end=None, status=502, error="upstream unreachable"))
    assert row["token"] is None and row["key_alias"] is None
    assert row["first_byte_time"] is None and row["end_time"] is None
    assert row["ttfb_ms"] is None and row["latency_ms"] is None
    assert row["total_tokens"] is None and row["error"] == "upstream unreachable"
    assert spend_row(finished(principal=OPEN))["token"] is None


def test_client_supplied_strings_are_cut_to_their_columns() -> None:
    ex = finished(end_user="e" * 1000, tags=["x" * 999, "", "ok"], request_id="r" * 500)
    ex.model = "m" * 5000
    ex.error = "boom\x00" * 10_000
    row = spend_row(ex)
    assert len(row["end_user"]) == 256 and len(row["model"]) == 256
    assert len(row["request_id"]) == 128
    assert row["tags"] == ["x" * 256, "ok"]
    assert "\x00" not in row["error"] and len(row["error"]) == 4096


def test_clean() -> None:
    assert clean(None) is None
    assert clean("a\x00b", 10) == "ab"
    assert clean("abcdef", 3) == "abc"
