"""JSON logs: one access line per call on stderr, with its fields and without secrets."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from passgate.call_record import access_fields, call_record, end_time
from passgate.exchange import Exchange, Usage
from passgate.observability.logs import (
    JsonFormatter,
    RequestLogger,
    configure_logging,
    shutdown_logging,
)
from passgate.observability.stack import Observability
from passgate.principal import Principal
from passgate.settings_env import load_settings
from tests.support.exchanges import exchange

MASTER_KEY = "master-key-7f3a9c2e"
PROVIDER_KEY = "PrOvIdErKeY0123456789abcdefXYZ"
KEY_HASH = "a" * 64
ACCESS_FIELDS = {
    "request_id",
    "method",
    "route",
    "upstream_path",
    "status",
    "model",
    "stream",
    "latency_ms",
    "ttfb_ms",
    "bytes_in",
    "bytes_out",
    "end_user",
    "key_alias",
    "cost",
    "interrupted",
    "error",
}


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


def make_exchange(request_id: str, *, error: str | None = None) -> Exchange:
    ex = exchange(request_id=request_id)
    ex.principal = Principal(kind="virtual", token=KEY_HASH, key_alias="team-a", user_id="u1")
    ex.model, ex.stream, ex.status = "mistral-small-latest", True, 200
    ex.first_byte, ex.end = 10.0125, 10.25
    ex.bytes_in, ex.bytes_out = 120, 4096
    ex.usage, ex.cost, ex.end_user = Usage(prompt_tokens=9, completion_tokens=30), 0.001, "alice"
    ex.error = error
    return ex


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


async def test_one_json_line_per_request_without_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", secrets=[MASTER_KEY, PROVIDER_KEY])
    request_logger = RequestLogger()
    await request_logger.finished(make_exchange("req-1"))
    await request_logger.finished(make_exchange("req-2", error=f"upstream said {PROVIDER_KEY}"))
    await request_logger.finished(make_exchange("req-3", error="echoed Bearer sk-live-abc12345"))
    logging.getLogger("passgate.test").warning("master key is %s", MASTER_KEY)
    shutdown_logging()

    err = capsys.readouterr().err
    lines = json_lines(err)
    access = [line for line in lines if line["logger"] == "passgate.access"]
    assert [line["request_id"] for line in access] == ["req-1", "req-2", "req-3"]
    first = access[0]
    assert first.keys() >= ACCESS_FIELDS
    assert first["message"] == "request"
    assert first["level"] == "info"
    assert first["time"].endswith("Z")
    assert first["method"] == "POST"
    assert first["route"] == "/mistral/v1/chat/completions"
    assert first["upstream_path"] == "/v1/chat/completions"
    assert first["status"] == 200
    assert first["model"] == "mistral-small-latest"
    assert first["stream"] is True
    assert first["latency_ms"] == 250.0
    assert first["ttfb_ms"] == 12.5
    assert (first["bytes_in"], first["bytes_out"]) == (120, 4096)
    assert (first["end_user"], first["key_alias"], first["cost"]) == ("alice", "team-a", 0.001)
    assert first["interrupted"] is False
    assert first["error"] is None
    assert access[1]["error"] == "upstream said [redacted]"
    assert access[2]["error"] == "echoed Bearer [redacted]"
    (warning,) = [line for line in lines if line["logger"] == "passgate.test"]
    assert warning["message"] == "master key is [redacted]"
    for secret in (MASTER_KEY, PROVIDER_KEY, KEY_HASH, "sk-live-abc12345"):
        assert secret not in err


async def test_lines_are_formatted_and_written_off_the_calling_thread() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.writes: list[tuple[str, str]] = []

        def write(self, text: str) -> int:
            self.writes.append((threading.current_thread().name, text))
            return len(text)

        def flush(self) -> None:
            pass

    stream = Recorder()
    configure_logging("info", stream=stream)  # type: ignore[arg-type]
    await RequestLogger().finished(make_exchange("req-9"))
    shutdown_logging()
    ((thread_name, text),) = stream.writes
    assert thread_name != threading.current_thread().name
    assert text.endswith("\n") and text.count("\n") == 1  # one write per line
    assert orjson.loads(text)["request_id"] == "req-9"


async def test_request_logger_is_silent_below_its_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("warning")
    await RequestLogger().finished(make_exchange("req-1"))
    shutdown_logging()
    assert capsys.readouterr().err == ""


async def test_configure_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    configure_logging("info")
    logging.getLogger("passgate.test").info("once")
    shutdown_logging()
    assert [line["message"] for line in json_lines(capsys.readouterr().err)] == ["once"]


def test_exceptions_are_one_json_line() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, "f.py", 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert "\n" not in line
    payload = orjson.loads(line)
    assert payload["message"] == "failed"
    assert "ValueError: boom" in payload["exception"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-123", "Authorization: Bearer [redacted]"),
        ("bearer xyz", "Bearer [redacted]"),
        ('{"key": "sk-1234"}', '{"key": "sk-[redacted]"}'),
        ("task-force desk-top", "task-force desk-top"),
        ("nothing secret", "nothing secret"),
    ],
)
def test_redaction_patterns(text: str, expected: str) -> None:
    assert JsonFormatter().redact(text) == expected


def test_secret_with_json_escapes_is_redacted() -> None:
    formatter = JsonFormatter(secrets=['we"ird\\key'])
    record = logging.LogRecord("x", logging.INFO, "f.py", 1, 'key=we"ird\\key', (), None)
    assert "ird" not in formatter.format(record)


def test_access_fields_carry_no_secret() -> None:
    fields = access_fields(call_record(make_exchange("req-1")))
    assert KEY_HASH not in orjson.dumps(fields).decode()
    assert fields["user_id"] == "u1"


def test_log_requests_false_disables_the_access_log() -> None:
    quiet = Observability(load_settings(log_requests=False))
    loud = Observability(load_settings(log_requests=True))
    assert quiet.request_logger is None
    assert not any(isinstance(o, RequestLogger) for o in quiet.observers)
    assert any(isinstance(o, RequestLogger) for o in loud.observers)


def early_refusal() -> Exchange:
    """A call refused before the upstream: no principal, model, usage or first byte."""
    ex = exchange("/mistral/v1/ocr", request_id="req-401", start_time=1_700_000_001.5, start=20.0)
    ex.status, ex.error, ex.end = 401, "invalid key", 20.0004
    return ex


@pytest.mark.parametrize(
    "ex",
    [
        make_exchange("req-1"),
        make_exchange("req-2", error="upstream closed the stream"),
        early_refusal(),
    ],
    ids=["priced", "interrupted", "refused"],
)
def test_a_call_record_gives_the_access_fields_of_its_call(ex: Exchange) -> None:
    # the spend-writer process writes the line from the record a worker sends
    principal, usage = ex.principal, ex.usage
    latency, ttfb = ex.latency_ms, ex.ttfb_ms
    expected = {
        "request_id": ex.request_id,
        "method": ex.method,
        "route": ex.route,
        "upstream_path": ex.upstream_path,
        "provider": ex.provider,
        "deployment": ex.deployment,
        "attempts": ex.attempts,
        "status": ex.status,
        "model": ex.model or ex.info.model,
        "stream": ex.stream,
        "latency_ms": None if latency is None else round(latency, 3),
        "ttfb_ms": None if ttfb is None else round(ttfb, 3),
        "bytes_in": ex.bytes_in,
        "bytes_out": ex.bytes_out,
        "prompt_tokens": None if usage is None else usage.prompt_tokens,
        "completion_tokens": None if usage is None else usage.completion_tokens,
        "end_user": ex.end_user,
        "key_alias": None if principal is None else principal.key_alias,
        "user_id": None if principal is None else principal.user_id,
        "team_id": None if principal is None else principal.team_id,
        "cost": ex.cost,
        "interrupted": ex.interrupted,
        "error": ex.error,
        "upstream_request_id": ex.upstream_request_id,
    }
    line = access_fields(call_record(ex))
    assert line == pytest.approx(expected)
    assert list(line) == list(expected)


def test_a_record_ends_when_its_call_ended() -> None:
    ex = make_exchange("req-1")
    assert end_time(call_record(ex)) == pytest.approx(1_700_000_000.25)
    ex.end = None
    assert end_time(call_record(ex)) is None


@pytest.mark.parametrize("sole_handler", [True, False], ids=["sole handler", "handler chain"])
async def test_a_line_logged_for_a_past_moment_carries_that_time(
    capsys: pytest.CaptureFixture[str], sole_handler: bool
) -> None:
    configure_logging("info", secrets=[PROVIDER_KEY])
    logger = logging.getLogger("passgate.access")
    if not sole_handler:
        logger.addFilter(lambda record: True)
    try:
        RequestLogger().log(access_fields(call_record(make_exchange("req-1"))), 1_700_000_000.25)
        RequestLogger().log({"request_id": "now"})
    finally:
        for kept in list(logger.filters):
            logger.removeFilter(kept)
    shutdown_logging()
    lines = json_lines(capsys.readouterr().err)
    assert [line["request_id"] for line in lines] == ["req-1", "now"]
    assert lines[0]["time"] == "2023-11-14T22:13:20.250Z"
    assert lines[1]["time"] > "2026-"
