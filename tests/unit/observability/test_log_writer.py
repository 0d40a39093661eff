"""The log writer thread: lines queued under load leave in a few writes, none lost or mixed."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime

import orjson
import pytest

from passgate.observability.logs import (
    ACCESS_LOGGER,
    RequestLogger,
    configure_logging,
    shutdown_logging,
)
from tests.unit.observability.test_logs import make_exchange


class Recorder:
    """A stream that keeps each write separately."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


class BrokenStream(Recorder):
    def write(self, text: str) -> int:
        raise OSError("stderr is closed")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    shutdown_logging()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_a_burst_of_lines_is_written_in_batches_in_order() -> None:
    stream = Recorder()
    configure_logging("info", stream=stream)  # type: ignore[arg-type]
    log = logging.getLogger("passgate.test")
    for index in range(500):
        log.info("line %d", index)
    shutdown_logging()
    text = "".join(stream.writes)
    messages = [orjson.loads(line)["message"] for line in text.splitlines()]
    assert messages == [f"line {index}" for index in range(500)]
    assert all(write.endswith("\n") for write in stream.writes)
    assert len(stream.writes) < 100  # batched: far fewer writes than lines


def test_a_record_that_cannot_be_formatted_does_not_stop_the_others() -> None:
    stream = Recorder()
    configure_logging("info", stream=stream)  # type: ignore[arg-type]
    log = logging.getLogger("passgate.test")
    log.info("before")
    log.info("%d apples", "not a number")  # getMessage() raises in the writer thread
    log.info("after")
    shutdown_logging()
    lines = [orjson.loads(line) for line in "".join(stream.writes).splitlines()]
    assert [line["message"] for line in lines] == [
        "before",
        "a log record could not be formatted",
        "after",
    ]


def test_a_broken_stream_does_not_stop_the_writer() -> None:
    configure_logging("info", stream=BrokenStream())  # type: ignore[arg-type]
    logging.getLogger("passgate.test").info("lost")
    shutdown_logging()  # returns: the thread ended although every write failed


async def test_the_access_line_is_the_same_built_on_the_loop_or_from_a_record() -> None:
    stream = Recorder()
    configure_logging("info", stream=stream, secrets=["master-key-7f3a9c2e"])  # type: ignore[arg-type]
    exchange = make_exchange("req-fast")
    exchange.error = "upstream said: Bearer abc.def and master-key-7f3a9c2e"
    await RequestLogger().finished(exchange)  # sole handler: the line is built on the loop
    access = logging.getLogger(ACCESS_LOGGER)
    extra = logging.NullHandler()
    access.addHandler(extra)  # another handler: the LogRecord path
    try:
        await RequestLogger().finished(exchange)
    finally:
        access.removeHandler(extra)
    shutdown_logging()
    fast, slow = (orjson.loads(line) for line in "".join(stream.writes).splitlines())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fast["time"])
    assert abs(_epoch(fast["time"]) - _epoch(slow["time"])) < 5
    del fast["time"], slow["time"]
    assert fast == slow
    assert list(fast) == list(slow)  # same key order
    assert "master-key-7f3a9c2e" not in fast["error"] and "abc.def" not in fast["error"]


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
