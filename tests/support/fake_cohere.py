"""A fake Cohere API: a real HTTP server on loopback, run in a thread, that records every request.

    with FakeCohere(api_key="co-real") as up:    # up.url == "http://127.0.0.1:PORT"
        ... call up.url (or a gateway pointed at it) ...
        record = up.last                          # method, raw_path, headers, body, ...

It answers chat (v1 and v2, whole or streamed: v2 as SSE, v1 as JSON lines), embed and rerank
(v1 and v2) and parse with the FIXED billed units of ``fake_cohere_payloads``, lists models,
and transcribes a multipart audio upload. A request without ``Authorization: Bearer <api_key>``
gets Cohere's 401. It shares the recording plumbing (and the knobs) of the fake Mistral upstream.
"""

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tests.support import fake_cohere_payloads as payloads
from tests.support.fake_mistral_app import (
    SSE_TYPE,
    Call,
    Handler,
    encode_json,
    sse_event,
)
from tests.support.fake_mistral_payloads import parse_multipart
from tests.support.fake_mistral_state import Knobs, Recorded
from tests.support.fake_server import FakeServer

__all__ = ["DEFAULT_KEY", "JSON_LINES_TYPE", "TRACE_HEADER", "FakeCohere", "Knobs", "Recorded"]

DEFAULT_KEY = "co-upstream-key"
# what Cohere's v1 chat answers a streamed call with: one JSON object per line
JSON_LINES_TYPE = "application/stream+json"
TRACE_HEADER = "x-debug-trace-id"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0

Endpoint = Callable[[Call, dict[str, Any]], Awaitable[None]]


def _new_id() -> str:
    return str(uuid.uuid4())


def _trace() -> tuple[str, str]:
    """The header naming Cohere's own id of a call (it sends no x-request-id)."""
    return (TRACE_HEADER, uuid.uuid4().hex)


async def _json(call: Call, value: Any, status: int = 200) -> None:
    await call.respond(status, encode_json(value), headers=[_trace()])


async def _error(call: Call, status: int, message: str) -> None:
    await _json(call, payloads.error(_new_id(), message), status=status)


async def _send_stream(call: Call, content_type: str, pieces: Iterable[bytes]) -> None:
    """A streamed answer, one body message per event, honouring event_delay and cut_stream_after."""
    head = [("content-type", content_type), ("cache-control", "no-cache"), _trace()]
    await call.start(200, head)
    items = list(pieces)
    for index, piece in enumerate(items):
        if index == call.knobs.cut_stream_after:
            call.drop()
            return
        if call.gone.is_set():
            return
        call.record.events_sent.append(time.monotonic())
        await call.chunk(piece)
        last = index == len(items) - 1
        if not last and call.knobs.event_delay and not await call.pause(call.knobs.event_delay):
            return
    await call.end()


async def chat_v2(call: Call, body: dict[str, Any]) -> None:
    """``POST /v2/chat``: whole, or SSE with named events when ``stream`` is true."""
    request_id = _new_id()
    if body.get("stream") is True:
        events = [sse_event(name, data) for name, data in payloads.v2_chat_events(request_id)]
        await _send_stream(call, SSE_TYPE, events)
    else:
        await _json(call, payloads.v2_chat(request_id))


async def chat_v1(call: Call, body: dict[str, Any]) -> None:
    """``POST /v1/chat``: whole, or JSON lines when ``stream`` is true."""
    request_id = _new_id()
    message = body.get("message")
    text = message if isinstance(message, str) else ""
    if body.get("stream") is True:
        lines = [encode_json(line) + b"\n" for line in payloads.v1_chat_lines(request_id, text)]
        await _send_stream(call, JSON_LINES_TYPE, lines)
    else:
        await _json(call, payloads.v1_chat(request_id, text))


def _version(call: Call) -> str:
    return "2" if call.record.path.startswith("/v2/") else "1"


async def embed(call: Call, body: dict[str, Any]) -> None:
    """``POST /v1/embed`` and ``/v2/embed``: one vector per text (or per input)."""
    texts = body.get("texts")
    if not isinstance(texts, list):
        inputs = body.get("inputs") or body.get("images") or []
        texts = [] if not isinstance(inputs, list) else ["" for _ in inputs]
    types = body.get("embedding_types")
    kinds = [str(kind) for kind in types] if isinstance(types, list) else []
    await _json(call, payloads.embed(_new_id(), _version(call), texts, kinds))


async def rerank(call: Call, body: dict[str, Any]) -> None:
    """``POST /v1/rerank`` and ``/v2/rerank``."""
    documents = body.get("documents")
    if not isinstance(documents, list) or not isinstance(body.get("query"), str):
        await _error(call, 400, "invalid request: query and documents are required")
        return
    top_n = body.get("top_n")
    limit = top_n if isinstance(top_n, int) and top_n > 0 else None
    await _json(call, payloads.rerank(_new_id(), _version(call), len(documents), limit))


async def parse(call: Call, body: dict[str, Any]) -> None:
    """``POST /v2/parse``."""
    await _json(call, payloads.parse(_new_id()))


_JSON_ROUTES: dict[str, Endpoint] = {
    "/v2/chat": chat_v2,
    "/v1/chat": chat_v1,
    "/v1/embed": embed,
    "/v2/embed": embed,
    "/v1/rerank": rerank,
    "/v2/rerank": rerank,
    "/v2/parse": parse,
}


async def models(call: Call) -> None:
    """``GET /v1/models``."""
    await _json(call, payloads.models_list())


async def transcription(call: Call) -> None:
    """``POST /v2/audio/transcriptions``: a multipart form with the audio under ``file``."""
    form = parse_multipart(call.record.header("content-type") or "", call.record.body)
    upload = form.get("file")
    if upload is None or "model" not in form:
        await _error(call, 400, "invalid request: file and model are required")
        return
    await _json(call, {"text": f"{len(upload.content)} bytes of audio from {upload.filename}"})


async def not_found(call: Call) -> None:
    """Cohere's 404."""
    await _error(call, 404, f"{call.record.method} {call.record.path} not found")


def _authorised(call: Call, key: str) -> bool:
    values = call.record.header_values("authorization")
    return values == ["Bearer " + key]


def _json_handler(endpoint: Endpoint) -> Handler:
    async def handler(call: Call) -> None:
        try:
            body = json.loads(call.record.body)
        except ValueError:
            await _error(call, 400, "invalid request: the body is not valid JSON")
            return
        if not isinstance(body, dict):
            await _error(call, 400, "invalid request: the body must be a JSON object")
            return
        await endpoint(call, body)

    return handler


def router(key: str) -> Callable[[Call], Handler | None]:
    """The fake's routes, behind a check of the upstream credential."""

    def route(call: Call) -> Handler | None:
        method, path = call.record.method, call.record.path
        canned = call.state.canned.get((method, path)) or call.state.canned.get((None, path))
        if not _authorised(call, key):

            async def refuse(c: Call) -> None:
                await _error(c, 401, "invalid api token")

            return refuse
        if canned is not None:

            async def answer_canned(c: Call) -> None:
                await c.respond(
                    canned.status, canned.body, content_type=None, headers=canned.headers
                )

            return answer_canned
        if method == "POST" and path in _JSON_ROUTES:
            return _json_handler(_JSON_ROUTES[path])
        if method == "GET" and path == "/v1/models":
            return models
        if method == "POST" and path == "/v2/audio/transcriptions":
            return transcription
        return not_found

    return route


class FakeCohere(FakeServer):
    """The fake Cohere upstream. Use as a context manager, or call start() and stop()."""

    def __init__(self, *, api_key: str = DEFAULT_KEY, **knobs: Any) -> None:
        self.api_key = api_key
        super().__init__("cohere", router(api_key), **knobs)
