"""A fake OpenAI API: a real HTTP server on loopback, run in a thread, that records every request.

    with FakeOpenAI(key="sk-real") as up:         # up.url == "http://127.0.0.1:PORT"
        ... call up.url (or a gateway pointed at it) ...
        record = up.last                           # method, raw_path, headers, body, ...

It checks ``Authorization: Bearer <key>`` and answers OpenAI's 401 otherwise. Metered routes
answer with the fixed usage of ``fake_openai_payloads``; streams are OpenAI's SSE (chat chunks
ending in ``data: [DONE]``, the responses API's named events, transcription, speech and image
events). Files, batches, assistants, threads and the like are kept in a small object store, so
the SDK's create / retrieve / list / delete flows work. The server plumbing (recording, knobs
such as ``stream_events`` and ``gzip``) is ``fake_server``'s.
"""

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from tests.support import fake_openai_payloads as payloads
from tests.support.fake_mistral_app import Call, Handler, encode_json, sse_data, sse_event
from tests.support.fake_mistral_payloads import Part, parse_multipart
from tests.support.fake_server import FakeServer

__all__ = ["FakeOpenAI"]

Endpoint = Callable[[Call, re.Match[str]], Awaitable[None]]
DEFAULT_MODEL = "gpt-4o-mini"


def _body(call: Call) -> dict[str, Any]:
    try:
        value = json.loads(call.record.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _form(call: Call) -> dict[str, Part]:
    return parse_multipart(call.record.header("content-type") or "", call.record.body)


def _text(form: dict[str, Part], name: str, default: str) -> str:
    part = form.get(name)
    return part.content.decode() if part is not None else default


def _model(body: dict[str, Any], default: str = DEFAULT_MODEL) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else default


def _headers(call: Call) -> list[tuple[str, str]]:
    """OpenAI's response headers: the request id the gateway correlates by, and timing."""
    return [
        ("x-request-id", "req_" + call.state.next_id("fake")),
        ("openai-processing-ms", "12"),
        ("openai-version", "2020-10-01"),
    ]


async def _json(call: Call, value: Any, status: int = 200) -> None:
    """A JSON answer with OpenAI's headers."""
    await call.respond(status, encode_json(value), headers=_headers(call))


async def chat(call: Call, _: re.Match[str]) -> None:
    """Chat completions, streamed when asked (usage only with ``include_usage``)."""
    body = _body(call)
    model, cid = _model(body), "chatcmpl-" + call.state.next_id("c")
    if body.get("stream") is True:
        options = body.get("stream_options")
        include = isinstance(options, dict) and options.get("include_usage") is True
        chunks = payloads.chat_chunks(model, cid, call.knobs.stream_events, include)
        await call.stream([sse_data(chunk) for chunk in chunks], b"data: [DONE]\n\n")
    else:
        await _json(call, payloads.chat_completion(model, cid))


async def responses(call: Call, _: re.Match[str]) -> None:
    """The responses API, streamed as named events when asked."""
    body = _body(call)
    model, rid = _model(body), "resp_" + call.state.next_id("r")
    if body.get("stream") is True:
        events = payloads.response_events(model, rid, call.knobs.stream_events)
        await call.stream([sse_event(name, data) for name, data in events])
    else:
        await _json(call, payloads.response(model, rid))


async def embeddings(call: Call, _: re.Match[str]) -> None:
    """One vector per input."""
    body = _body(call)
    inputs = body.get("input", "")
    count = len(inputs) if isinstance(inputs, list) else 1
    await _json(call, payloads.embeddings(_model(body, "text-embedding-3-small"), count))


async def transcription(call: Call, _: re.Match[str]) -> None:
    """Transcriptions and translations from a multipart form; SSE when stream=true."""
    form = _form(call)
    model = _text(form, "model", "whisper-1")
    if _text(form, "stream", "false").lower() == "true":
        events = payloads.transcription_events()
        await call.stream([sse_event(name, data) for name, data in events])
        return
    answer = payloads.transcription(model, _text(form, "response_format", "json"))
    await _json(call, answer)


async def speech(call: Call, _: re.Match[str]) -> None:
    """Audio bytes, or SSE events ending with the usage when ``stream_format`` is sse."""
    body = _body(call)
    if body.get("stream_format") == "sse":
        events = payloads.speech_events()
        await call.stream([sse_event(name, data) for name, data in events])
        return
    await call.respond(200, payloads.SPEECH_AUDIO, "audio/mpeg", _headers(call))


async def images(call: Call, _: re.Match[str]) -> None:
    """Generations (JSON body) and edits (multipart), streamed when asked."""
    is_form = (call.record.header("content-type") or "").startswith("multipart/")
    if is_form:
        form = _form(call)
        model, n, stream = (
            _text(form, "model", "gpt-image-1"),
            int(_text(form, "n", "1")),
            _text(form, "stream", "false") == "true",
        )
    else:
        body = _body(call)
        model, n, stream = (
            _model(body, "gpt-image-1"),
            int(body.get("n", 1)),
            body.get("stream") is True,
        )
    if stream is True:
        events = payloads.image_events(n)
        await call.stream([sse_event(name, data) for name, data in events])
        return
    await _json(call, payloads.images(model, n))


async def moderations(call: Call, _: re.Match[str]) -> None:
    """A moderation result, without usage."""
    body = _body(call)
    model = _model(body, "omni-moderation-latest")
    await _json(call, payloads.moderation(model, "modr-" + call.state.next_id("m")))


async def list_models(call: Call, _: re.Match[str]) -> None:
    """The model list."""
    await _json(call, payloads.models())


async def file_content(call: Call, match: re.Match[str]) -> None:
    """A file's bytes."""
    await call.respond(200, payloads.FILE_CONTENT, "application/octet-stream", _headers(call))


# collection path -> (object type, id prefix); nested collections carry their parent in the path
_OBJECTS = {
    "files": ("file", "file"),
    "batches": ("batch", "batch"),
    "assistants": ("assistant", "asst"),
    "threads": ("thread", "thread"),
    "messages": ("thread.message", "msg"),
    "runs": ("thread.run", "run"),
    "vector_stores": ("vector_store", "vs"),
    "fine_tuning/jobs": ("fine_tuning.job", "ftjob"),
}
_STORE = re.compile(
    r"/v1/(?:threads/(?P<thread>[^/]+)/)?(?P<kind>files|batches|assistants|threads|messages|runs"
    r"|vector_stores|fine_tuning/jobs)(?:/(?P<id>[^/]+))?"
)


def _store(call: Call) -> dict[str, dict[str, Any]]:
    stored: dict[str, dict[str, Any]] = call.state.jobs  # the fake's shared object store
    return stored


async def objects(call: Call, match: re.Match[str]) -> None:
    """Create, retrieve, list and delete stored objects (files, batches, assistants, ...)."""
    kind, object_id, thread = match.group("kind"), match.group("id"), match.group("thread")
    object_type, prefix = _OBJECTS[kind]
    store = _store(call)
    method = call.record.method
    if method == "POST" and object_id is None:
        if kind == "files":
            form = _form(call)
            upload = form.get("file")
            fields: dict[str, Any] = {
                "purpose": _text(form, "purpose", "batch"),
                "filename": upload.filename if upload is not None else "upload",
                "bytes": len(upload.content) if upload is not None else 0,
            }
        else:
            fields = _body(call)
        new_id = f"{prefix}_{call.state.next_id('o')}"
        stored = {
            **fields,
            "id": new_id,
            "object": object_type,
            "created_at": payloads.now(),
            "_kind": kind,
        }
        if kind == "runs":
            stored |= {"thread_id": thread, "status": "completed"}
        if kind == "messages":
            stored |= {"thread_id": thread, "content": [{"type": "text", "text": {"value": ""}}]}
        if kind == "batches":
            stored |= {"status": "validating"}
        store[new_id] = stored
        await _json(call, _public(stored))
    elif method == "GET" and object_id is None:
        found = [_public(o) for o in store.values() if o["_kind"] == kind]
        if thread is not None:
            found = [o for o in found if o.get("thread_id") == thread]
        await _json(call, {"object": "list", "data": found, "has_more": False})
    elif object_id in store and method in ("GET", "POST"):
        await _json(call, _public(store[object_id]))
    elif object_id in store and method == "DELETE":
        del store[object_id]
        await _json(call, {"id": object_id, "object": object_type + ".deleted", "deleted": True})
    else:
        await _json(call, payloads.not_found(call.record.path), status=404)


def _public(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if not k.startswith("_")}


ROUTES: list[tuple[str | None, re.Pattern[str], Endpoint]] = [
    ("POST", re.compile(r"/v1/chat/completions"), chat),
    ("POST", re.compile(r"/v1/responses"), responses),
    ("POST", re.compile(r"/v1/embeddings"), embeddings),
    ("POST", re.compile(r"/v1/audio/(?:transcriptions|translations)"), transcription),
    ("POST", re.compile(r"/v1/audio/speech"), speech),
    ("POST", re.compile(r"/v1/images/(?:generations|edits)"), images),
    ("POST", re.compile(r"/v1/moderations"), moderations),
    ("GET", re.compile(r"/v1/models"), list_models),
    ("GET", re.compile(r"/v1/files/(?P<id>[^/]+)/content"), file_content),
    (None, _STORE, objects),
]


def router(key: str | None, base_path: str = "") -> Callable[[Call], Handler | None]:
    """The fake's router: the credential check first, then the endpoints."""

    def route(call: Call) -> Handler | None:
        sent = call.record.header("authorization")
        if key is not None and sent != "Bearer " + key:
            body = payloads.missing_key() if sent is None else payloads.invalid_key()

            async def refuse(c: Call) -> None:
                await _json(c, body, status=401)

            return refuse
        path = call.record.path
        if base_path:
            if not path.startswith(base_path + "/"):
                return None
            path = path[len(base_path) :]
        for method, pattern, endpoint in ROUTES:
            match = pattern.fullmatch(path)
            if match is not None and method in (None, call.record.method):
                return _bind(endpoint, match)

        async def missing(c: Call) -> None:
            await _json(c, payloads.not_found(c.record.path), status=404)

        return missing

    return route


def _bind(endpoint: Endpoint, match: re.Match[str]) -> Handler:
    async def handler(call: Call) -> None:
        await endpoint(call, match)

    return handler


class FakeOpenAI(FakeServer):
    """The fake upstream; ``key`` is the credential it demands (None: any or none), and
    ``base_path`` a path it lives under (an OpenAI-compatible server's ``/api``, say)."""

    def __init__(self, *, key: str | None = "sk-upstream-real", base_path: str = "", **knobs: Any):
        super().__init__("openai", router(key, base_path.rstrip("/")), **knobs)
        self.key = key
