"""Spend rows from a worker to the spend-writer process: the line format and the forwarder.

The forwarder talks to a real ``Receiver`` on a real Unix socket in a temporary directory;
the receiver's writer is a list, so what arrives is compared row for row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from passgate.accounting.rows import row_from_record, spend_row
from passgate.accounting.spend_link import SpendForwarder, decode, encode
from passgate.call_record import FIELDS, USAGE_FIELDS, CallRecord, call_record
from passgate.exchange import Exchange, Usage
from passgate.observability.logs import RequestLogger
from passgate.principal import Principal
from passgate.runtime.spend_process import Receiver, access_line_writer


class Rows:
    """Stands in for the SpendWriter: keeps the call records the receiver enqueues."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def enqueue(self, record: CallRecord) -> None:
        self.records.append(record)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The spend rows of the records received."""
        return [row_from_record(record) for record in self.records]


def exchange(number: int = 0, **fields: Any) -> Exchange:
    start = time.perf_counter()
    ex = Exchange(
        request_id=f"req-{number}",
        method="POST",
        route="/mistral/v1/chat/completions",
        upstream_path="/v1/chat/completions",
        provider="mistral",
        start_time=1_764_000_000.123456 + number,
        start=start,
        api_path="/v1/chat/completions",
        principal=Principal(kind="virtual", token="ab" * 32, key_alias="k", user_id="u"),
        end_user="alice",
        tags=["a", "é"],
        model="mistral-small-latest",
        status=200,
        first_byte=start + 0.0012,
        end=start + 0.0345,
        usage=Usage(prompt_tokens=3, completion_tokens=5, total_tokens=8),
        cost=0.000123,
        upstream_request_id="up-1",
    )
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex


def test_a_line_becomes_the_row_the_writer_would_have_made() -> None:
    ex = exchange()
    line = encode(call_record(ex))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == call_record(ex)  # floats too: orjson writes them exactly
    back = row_from_record(decode(line))
    assert back == spend_row(ex)
    for name in ("start_time", "first_byte_time", "end_time"):
        assert back[name].tzinfo is not None
        assert back[name].utcoffset() == timedelta(0)


def test_times_on_a_whole_second_and_missing_times_survive() -> None:
    ex = exchange(first_byte=None, end=None, start_time=1_767_323_045.0)
    row = row_from_record(decode(encode(call_record(ex))))
    assert row == spend_row(ex)
    assert row["start_time"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert row["first_byte_time"] is None and row["latency_ms"] is None


def test_values_are_cut_to_their_columns_in_the_writer_process() -> None:
    ex = exchange(model="m" * 1000, error="e\x00rr", tags=["", "t" * 300])
    row = row_from_record(decode(encode(call_record(ex))))
    assert row == spend_row(ex)
    assert len(row["model"]) == 256 and row["error"] == "err" and row["tags"] == ["t" * 256]


def test_newlines_inside_values_stay_inside_one_line() -> None:
    ex = exchange(error="line one\nline two\r\n", tags=["x\ny"])
    line = encode(call_record(ex))
    assert line.count(b"\n") == 1
    assert row_from_record(decode(line)) == spend_row(ex)


BAD_LINES = [
    b"[1, 2]",
    b"not json",
    b'{"start_time": 1}',
    b"[" + b'"x", ' * 28 + b'"x"]',  # the right length, but no time where the start is
    b"[" + b"1, " * 28 + b"1]",  # a number where the call id is
]


@pytest.mark.parametrize("line", BAD_LINES)
def test_a_line_that_is_not_a_row_is_a_value_error(line: bytes) -> None:
    with pytest.raises(ValueError):
        decode(line)


@asynccontextmanager
async def receiving(path: Path, linger: float = 5.0) -> AsyncIterator[tuple[Rows, Receiver]]:
    rows = Rows()
    receiver = Receiver([rows.enqueue])
    server = await asyncio.start_unix_server(receiver.handle, path=str(path))
    try:
        yield rows, receiver
    finally:
        server.close()
        await receiver.drain(linger)


async def eventually(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_every_row_arrives_in_order_and_stop_flushes(tmp_path: Path) -> None:
    path = tmp_path / "spend.sock"
    async with receiving(path) as (rows, _):
        forwarder = SpendForwarder(str(path))
        await forwarder.start()
        sent = [exchange(n) for n in range(2000)]
        for ex in sent[:1000]:
            await forwarder.finished(ex)
        await eventually(lambda: len(rows.records) == 1000)
        for ex in sent[1000:]:
            await forwarder.finished(ex)
        await forwarder.stop()  # flushes what is queued before closing
        await eventually(lambda: len(rows.records) == 2000)
    assert [row["request_id"] for row in rows.rows] == [ex.request_id for ex in sent]
    assert rows.rows[7] == spend_row(sent[7])
    assert (forwarder.sent, forwarder.dropped, forwarder.pending) == (2000, 0, 0)


async def test_rows_wait_for_a_process_that_is_not_listening_yet(tmp_path: Path) -> None:
    path = tmp_path / "spend.sock"
    forwarder = SpendForwarder(str(path))
    await forwarder.start()
    for number in range(50):
        await forwarder.finished(exchange(number))
    await asyncio.sleep(0.2)  # a few failed connection attempts
    assert forwarder.pending == 50
    async with receiving(path) as (rows, _):
        await eventually(lambda: len(rows.records) == 50)
        await forwarder.stop()
    assert forwarder.sent == 50


async def test_a_restarted_process_gets_the_rows_sent_after_the_first_went_away(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spend.sock"
    forwarder = SpendForwarder(str(path))
    async with receiving(path, linger=0.1) as (first, _):
        await forwarder.start()
        for number in range(100):
            await forwarder.finished(exchange(number))
        await eventually(lambda: len(first.records) == 100)
    # the process is gone (its connections cut); a new one binds the same path
    path.unlink()
    for number in range(100, 200):
        await forwarder.finished(exchange(number))
    async with receiving(path) as (second, _):
        await eventually(
            lambda: {r["request_id"] for r in second.rows} >= {f"req-{n}" for n in range(100, 200)}
        )
        await forwarder.stop()
    # a chunk cut by the failure may be sent again: stored once (ON CONFLICT on call_id)
    received = [row["call_id"] for row in first.rows + second.rows]
    assert len(set(received)) == 200


async def test_a_full_queue_counts_what_it_drops(tmp_path: Path) -> None:
    forwarder = SpendForwarder(str(tmp_path / "nobody.sock"), queue_max=10)
    for number in range(15):
        await forwarder.finished(exchange(number))
    assert (forwarder.pending, forwarder.dropped) == (10, 5)
    forwarder.stop_timeout = 0.2
    await forwarder.start()
    await forwarder.stop()  # nobody listens: it gives up after its timeout
    await forwarder.finished(exchange(99))
    assert forwarder.dropped == 6


async def test_a_broken_line_is_refused_and_the_rest_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "spend.sock"
    async with receiving(path) as (rows, receiver):
        _, stream = await asyncio.open_unix_connection(str(path))
        good = encode(call_record(exchange(1)))
        stream.write(good + b"{broken\n" + good[:10])  # the last one cut: its sender died
        await stream.drain()
        stream.close()
        await stream.wait_closed()
        await eventually(lambda: receiver.bad_lines == 2)
    assert [row["request_id"] for row in rows.rows] == ["req-1"]


def test_a_record_names_each_value_in_record_fields_order() -> None:
    usage = Usage(
        prompt_tokens=1,
        completion_tokens=2,
        cached_tokens=3,
        total_tokens=4,
        pages=5,
        annotated_pages=6,
        audio_seconds=7.5,
        characters=8,
    )
    ex = exchange(usage=usage, bytes_in=123, bytes_out=456)
    named = dict(zip(FIELDS, call_record(ex), strict=True))
    for name in USAGE_FIELDS:
        assert named[name] == getattr(usage, name), name
    assert (named["call_id"], named["request_id"], named["cost"]) == (
        ex.call_id,
        ex.request_id,
        ex.cost,
    )
    assert named["start_time"] == ex.start_time and named["tags"] == ex.tags
    assert (named["bytes_in"], named["bytes_out"]) == (ex.bytes_in, ex.bytes_out)


async def test_every_consumer_gets_every_record_in_order(tmp_path: Path) -> None:
    first, second = Rows(), Rows()
    receiver = Receiver([first.enqueue, second.enqueue])
    server = await asyncio.start_unix_server(receiver.handle, path=str(tmp_path / "s.sock"))
    forwarder = SpendForwarder(str(tmp_path / "s.sock"), linger=0.001)
    await forwarder.start()
    for number in range(5):
        await forwarder.finished(exchange(number))
    await forwarder.stop()
    server.close()
    await receiver.drain(5.0)
    expected = [f"req-{number}" for number in range(5)]
    assert [row["request_id"] for row in first.rows] == expected
    assert first.records == second.records


async def test_a_record_one_consumer_fails_on_reaches_the_others(tmp_path: Path) -> None:
    rows = Rows()
    receiver = Receiver([access_line_writer(RequestLogger()), rows.enqueue])
    path = str(tmp_path / "s.sock")
    server = await asyncio.start_unix_server(receiver.handle, path=path)
    # decode() lets a value of the wrong kind through; the line cannot be written of it
    odd = call_record(exchange(1))._replace(duration=cast(float, "soon"))
    _, stream = await asyncio.open_unix_connection(path)
    stream.write(encode(odd) + encode(call_record(exchange(2))))
    await stream.drain()
    stream.close()
    await eventually(lambda: len(rows.records) == 2)
    server.close()
    await receiver.drain(5.0)
    assert [record[1] for record in rows.records] == ["req-1", "req-2"]
    assert (receiver.failures, receiver.bad_lines) == (1, 0)
