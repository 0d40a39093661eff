"""A fake Anthropic API: a real HTTP server on loopback, in a thread, recording every request.

    with FakeAnthropic(api_key="sk-ant-real") as up:   # up.url == "http://127.0.0.1:PORT"
        ... call up.url (or a gateway pointed at it) ...
        record = up.last                                # method, raw_path, headers, body, ...

Modelled on Anthropic's published API: ``POST /v1/messages`` (whole, or SSE with
``message_start`` ... ``message_delta`` ... ``message_stop`` and a ``ping``), token counting,
the models list, a batch's results (JSON lines served as ``application/binary``) and a file
upload (multipart). Usage is FIXED (``USAGE``), with cache reads and writes, so tests can
compute the exact cost. A request without ``x-api-key: <api_key>`` gets Anthropic's 401.
"""

import json
import uuid
from typing import Any

from tests.support.fake_mistral_app import Call, Handler, encode_json, sse_event
from tests.support.fake_mistral_payloads import parse_multipart
from tests.support.fake_server import FakeServer

DEFAULT_KEY = "sk-ant-upstream-key"
# the message usage every answer reports: Anthropic's input_tokens leaves out the cache
FRESH_INPUT = 20
CACHE_READ = 300
CACHE_WRITE_5M = 60
CACHE_WRITE_1H = 40
OUTPUT = 15
USAGE = {
    "input_tokens": FRESH_INPUT,
    "cache_creation_input_tokens": CACHE_WRITE_5M + CACHE_WRITE_1H,
    "cache_read_input_tokens": CACHE_READ,
    "cache_creation": {
        "ephemeral_5m_input_tokens": CACHE_WRITE_5M,
        "ephemeral_1h_input_tokens": CACHE_WRITE_1H,
    },
    "output_tokens": OUTPUT,
    "service_tier": "standard",
}
COUNTED = 42  # what count_tokens answers
BATCH_LINES = 3  # results in a batch's results file, each with BATCH_USAGE
BATCH_USAGE = {"input_tokens": 10, "output_tokens": 5}
TEXT = ["Hello", " from", " the", " fake."]
_EMPTY_TEXT = {"type": "text", "text": ""}


def _request_id() -> tuple[str, str]:
    return ("request-id", "req_" + uuid.uuid4().hex[:24])


def message(model: str, text: str = "".join(TEXT)) -> dict[str, Any]:
    """A whole message answer."""
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": USAGE,
    }


def stream_events(model: str) -> list[bytes]:
    """A streamed message, event by event, as Anthropic sends it."""
    start = message(model, "")
    start["content"] = []
    start["stop_reason"] = None
    start["usage"] = {**USAGE, "output_tokens": 1}
    events = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    events += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
        )
        for t in TEXT
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": OUTPUT},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [sse_event(name, data) for name, data in events]


def _error(kind: str, text: str) -> bytes:
    return encode_json({"type": "error", "error": {"type": kind, "message": text}})


async def messages(call: Call) -> None:
    """``POST /v1/messages``."""
    try:
        body = json.loads(call.record.body)
    except ValueError:
        await call.respond(400, _error("invalid_request_error", "invalid JSON"))
        return
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str) or not isinstance(body.get("max_tokens"), int):
        await call.respond(400, _error("invalid_request_error", "model and max_tokens: required"))
        return
    if body.get("stream") is True:
        await call.stream(stream_events(model))
    else:
        await call.respond(200, encode_json(message(model)), headers=[_request_id()])


async def count_tokens(call: Call) -> None:
    """``POST /v1/messages/count_tokens``."""
    await call.respond(200, encode_json({"input_tokens": COUNTED}), headers=[_request_id()])


async def models(call: Call) -> None:
    """``GET /v1/models``."""
    listed = [{"type": "model", "id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6"}]
    page = {"data": listed, "has_more": False, "first_id": listed[0]["id"], "last_id": None}
    await call.respond(200, encode_json(page), headers=[_request_id()])


async def batch_results(call: Call) -> None:
    """``GET /v1/messages/batches/{id}/results``: one JSON line per request of the batch."""
    lines = []
    for number in range(BATCH_LINES):
        result = message("claude-haiku-4-5")
        result["usage"] = BATCH_USAGE
        line = {"custom_id": f"req-{number}", "result": {"type": "succeeded", "message": result}}
        lines.append(encode_json(line) + b"\n")
    await call.respond(200, b"".join(lines), content_type="application/binary")


async def upload_file(call: Call) -> None:
    """``POST /v1/files``: a multipart upload under ``file``."""
    form = parse_multipart(call.record.header("content-type") or "", call.record.body)
    upload = form.get("file")
    if upload is None:
        await call.respond(400, _error("invalid_request_error", "file: required"))
        return
    answer = {
        "id": "file_" + uuid.uuid4().hex[:24],
        "type": "file",
        "filename": upload.filename,
        "size_bytes": len(upload.content),
        "mime_type": "application/octet-stream",
        "created_at": "2026-12-07T00:00:00Z",
        "downloadable": False,
    }
    await call.respond(200, encode_json(answer), headers=[_request_id()])


async def not_found(call: Call) -> None:
    """Anthropic's 404."""
    await call.respond(404, _error("not_found_error", f"{call.record.path}: not found"))


def router(key: str) -> Any:
    """The fake's routes, behind a check of the upstream credential."""

    def route(call: Call) -> Handler | None:
        method, path = call.record.method, call.record.path
        if call.record.header_values("x-api-key") != [key]:

            async def refuse(c: Call) -> None:
                await c.respond(401, _error("authentication_error", "invalid x-api-key"))

            return refuse
        if method == "POST" and path == "/v1/messages":
            return messages
        if method == "POST" and path == "/v1/messages/count_tokens":
            return count_tokens
        if method == "GET" and path == "/v1/models":
            return models
        if (
            method == "GET"
            and path.startswith("/v1/messages/batches/")
            and path.endswith("/results")
        ):
            return batch_results
        if method == "POST" and path == "/v1/files":
            return upload_file
        return not_found

    return route


class FakeAnthropic(FakeServer):
    """The fake Anthropic upstream. Use as a context manager, or call start() and stop()."""

    def __init__(self, *, api_key: str = DEFAULT_KEY, **knobs: Any) -> None:
        self.api_key = api_key
        super().__init__("anthropic", router(api_key), **knobs)
