"""One typed call record drives the wire, the stored row and the access line."""

from __future__ import annotations

from dataclasses import fields

from passgate.accounting.rows import COLUMNS, row_from_record
from passgate.accounting.spend_link import decode, encode
from passgate.call_record import (
    ACCESS_FIELDS,
    FIELDS,
    USAGE_FIELDS,
    CallRecord,
    call_record,
    record_of,
)
from passgate.exchange import Usage
from passgate.storage.models import SpendLog
from tests.support.exchanges import exchange

# record fields that are not columns of their own: the access line's byte counts, and the
# durations the stored times and milliseconds are made of
NOT_STORED = {"ttfb", "duration", "attempts", "bytes_in", "bytes_out"}
DERIVED_COLUMNS = {"first_byte_time", "end_time", "latency_ms", "ttfb_ms"}


def test_the_usage_fields_stand_in_the_record_in_usage_order() -> None:
    at = FIELDS.index(USAGE_FIELDS[0])
    assert FIELDS[at : at + len(USAGE_FIELDS)] == tuple(f.name for f in fields(Usage))


def test_every_record_field_is_stored_or_named_as_not_stored() -> None:
    # a field added to the record reaches the spend row by name, or is declared here
    assert set(FIELDS) - set(COLUMNS) == NOT_STORED
    assert set(COLUMNS) - set(FIELDS) == DERIVED_COLUMNS
    assert tuple(c.name for c in SpendLog.__table__.columns) == COLUMNS


def test_the_access_line_reads_record_fields() -> None:
    assert {source for _, source in ACCESS_FIELDS} <= set(FIELDS)


def test_the_wire_round_trips_a_record() -> None:
    ex = exchange(usage=Usage(prompt_tokens=3, completion_tokens=4, cache_write_tokens=1))
    ex.tags.append("t")
    record = call_record(ex)
    back = decode(encode(record))
    assert isinstance(back, CallRecord)
    assert back == record
    assert row_from_record(back) == row_from_record(record)


def test_a_record_of_the_wrong_shape_is_refused() -> None:
    record = list(call_record(exchange()))
    for bad in (record[:-1], [1, *record[1:]], [*record[:2], "soon", *record[3:]]):
        try:
            record_of(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_each_stored_field_reaches_its_column() -> None:
    ex = exchange(
        usage=Usage(prompt_tokens=10, search_units=2, images=3, reasoning_tokens=4),
    )
    ex.deployment = "workspace-a"
    row = row_from_record(call_record(ex))
    for name in set(FIELDS) - NOT_STORED - {"start_time", "tags"}:
        assert row[name] == getattr(call_record(ex), name), name
