"""The endpoints of the fake Gemini upstream: Google's credential check, then the routes.

The API key is taken where Google takes it (``x-goog-api-key``, else the ``key`` query
parameter) and answered with Google's own errors: a wrong key 400 API_KEY_INVALID, no key
403 PERMISSION_DENIED, an Authorization header that is no OAuth token 401 UNAUTHENTICATED.
"""

import email.parser
import email.policy
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.support import fake_gemini_payloads as payloads
from tests.support.fake_mistral_app import (
    JSON_TYPE,
    Call,
    Handler,
    encode_json,
    sse_data,
    sse_event,
)

Endpoint = Callable[[Call, re.Match[str]], Awaitable[None]]


@dataclass
class GeminiFile:
    """A file uploaded to /upload/v1beta/files."""

    display_name: str
    mime_type: str
    content: bytes


@dataclass
class Upload:
    """A resumable upload under way."""

    display_name: str
    mime_type: str
    received: bytearray = field(default_factory=bytearray)


@dataclass
class GeminiStore:
    """What the fake keeps between calls besides the recorded requests."""

    api_key: str
    files: dict[str, GeminiFile] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)  # resumable sessions by id


def _query(call: Call) -> dict[str, list[str]]:
    return parse_qs(call.record.query.decode("latin-1"), keep_blank_values=True)


async def _error(call: Call, status: int, body: Any) -> None:
    await call.json(body, status=status)


async def _with_json(call: Call, answer: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Answer with ``answer(body)``, or with Google's 400 when the body is not JSON."""
    try:
        body = payloads.loads_lenient(call.record.body) if call.record.body.strip() else {}
    except ValueError as problem:
        message = f"Invalid JSON payload received. {problem}"
        await _error(call, 400, payloads.error(400, message, "INVALID_ARGUMENT"))
        return
    await answer(body if isinstance(body, dict) else {})


def _cached(body: dict[str, Any]) -> bool:
    return isinstance(body.get("cachedContent"), str) and bool(body["cachedContent"])


async def generate(call: Call, match: re.Match[str]) -> None:
    """generateContent: one GenerateContentResponse."""

    async def answer(body: dict[str, Any]) -> None:
        response_id = call.state.next_id("resp")
        await call.json(payloads.generate_response(match["model"], response_id, _cached(body)))

    await _with_json(call, answer)


async def stream_generate(call: Call, match: re.Match[str]) -> None:
    """streamGenerateContent: SSE with ``alt=sse``, else a JSON array sent element by element."""

    async def answer(body: dict[str, Any]) -> None:
        response_id = call.state.next_id("resp")
        events = payloads.stream_events(
            match["model"], response_id, _cached(body), call.knobs.stream_events
        )
        if _query(call).get("alt") == ["sse"]:
            # Google ends each event with CRLF CRLF
            await call.stream([sse_data(event).replace(b"\n\n", b"\r\n\r\n") for event in events])
            return
        await call.start(200, [("content-type", JSON_TYPE)])
        for index, event in enumerate(events):
            text = json.dumps(event, indent=2).encode()
            await call.chunk((b"[" if index == 0 else b"\n,\r\n") + text)
        await call.end(b"\n]")

    await _with_json(call, answer)


async def embed(call: Call, _: re.Match[str]) -> None:
    """embedContent: one embedding."""

    async def answer(_: dict[str, Any]) -> None:
        await call.json(payloads.embed_response())

    await _with_json(call, answer)


async def batch_embed(call: Call, _: re.Match[str]) -> None:
    """batchEmbedContents: one embedding per request."""

    async def answer(body: dict[str, Any]) -> None:
        requests = body.get("requests")
        count = len(requests) if isinstance(requests, list) else 0
        await call.json(payloads.batch_embed_response(count))

    await _with_json(call, answer)


async def count_tokens(call: Call, _: re.Match[str]) -> None:
    """countTokens: the prompt's size, free."""

    async def answer(body: dict[str, Any]) -> None:
        await call.json(payloads.count_tokens_response(_cached(body)))

    await _with_json(call, answer)


async def batch_generate(call: Call, match: re.Match[str]) -> None:
    """batchGenerateContent: a pending long-running operation."""

    async def answer(_: dict[str, Any]) -> None:
        batch_id = call.state.next_id("batch")
        await call.json(payloads.batch_operation(match["model"], batch_id))

    await _with_json(call, answer)


async def interactions(call: Call, _: re.Match[str]) -> None:
    """Interactions API: a completed interaction, streamed (SSE, then [DONE]) when asked."""

    async def answer(body: dict[str, Any]) -> None:
        named = body.get("model")
        model = named if isinstance(named, str) else "gemini-3.5-flash"
        interaction_id = call.state.next_id("v1_interaction")
        cached = isinstance(body.get("cached_content"), str)
        if body.get("stream") is True:
            count = call.knobs.stream_events
            events = payloads.interaction_events(model, interaction_id, cached, count)
            await call.stream([sse_event(n, d) for n, d in events], b"data: [DONE]\n\n")
            return
        await call.json(payloads.interaction(model, interaction_id, cached))

    await _with_json(call, answer)


async def list_models(call: Call, _: re.Match[str]) -> None:
    """models.list."""
    await call.json(payloads.models_page())


async def get_model(call: Call, match: re.Match[str]) -> None:
    """models.get."""
    await call.json(payloads.model_info(match["model"]))


def _file_view(file_id: str, stored: GeminiFile) -> dict[str, Any]:
    size = len(stored.content)
    return payloads.file_resource(file_id, stored.display_name, stored.mime_type, size)


def _related_parts(call: Call) -> tuple[dict[str, Any], str, bytes]:
    """The metadata and the media of a multipart/related upload (parsed by the email package)."""
    content_type = call.record.header("content-type") or ""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + call.record.body)
    parts = list(message.iter_parts())
    payloads_of = [part.get_payload(decode=True) for part in parts]
    raw = [payload if isinstance(payload, bytes) else b"" for payload in payloads_of]
    metadata = json.loads(raw[0] or b"{}") if raw else {}
    metadata = metadata if isinstance(metadata, dict) else {}
    if len(parts) < 2:
        return metadata, "application/octet-stream", b""
    return metadata, parts[1].get_content_type(), raw[1]


def _display_name(metadata: dict[str, Any]) -> str:
    file = metadata.get("file")
    # proto JSON takes lowerCamelCase and the original snake_case field names alike
    name = (file.get("displayName") or file.get("display_name")) if isinstance(file, dict) else None
    return name if isinstance(name, str) else "upload"


async def _store(call: Call, store: GeminiStore, name: str, mime: str, content: bytes) -> None:
    file_id = uuid.uuid4().hex[:12]
    store.files[file_id] = GeminiFile(name, mime, content)
    body = encode_json({"file": _file_view(file_id, store.files[file_id])})
    await call.respond(200, body, headers=[("x-goog-upload-status", "final")])


async def _resume(call: Call, store: GeminiStore, upload_id: str) -> None:
    """A chunk of a resumable upload (the session URL needs no key); the last one finalizes."""
    session = store.uploads[upload_id]
    command = (call.record.header("x-goog-upload-command") or "").lower()
    if "upload" in command:
        session.received += call.record.body
    if "finalize" not in command:
        await call.respond(
            200, b"", content_type=None, headers=[("x-goog-upload-status", "active")]
        )
        return
    del store.uploads[upload_id]
    await _store(call, store, session.display_name, session.mime_type, bytes(session.received))


async def upload(call: Call, store: GeminiStore) -> None:
    """/upload/v1beta/files: multipart, raw, or the start of a resumable upload."""
    protocol = (call.record.header("x-goog-upload-protocol") or "raw").lower()
    command = (call.record.header("x-goog-upload-command") or "").lower()
    if protocol == "resumable" and command == "start":
        metadata = payloads.loads_lenient(call.record.body) if call.record.body.strip() else {}
        mime = call.record.header("x-goog-upload-header-content-type") or "application/octet-stream"
        upload_id = uuid.uuid4().hex
        store.uploads[upload_id] = Upload(_display_name(metadata), mime)
        # Google names its own host here; a client then sends the bytes there directly
        host = call.record.header("host") or "127.0.0.1"
        path = f"{call.record.path}?upload_id={upload_id}&upload_protocol=resumable"
        url = f"http://{host}{path}"
        headers = [("x-goog-upload-url", url), ("x-goog-upload-status", "active")]
        await call.respond(200, b"", content_type=None, headers=headers)
        return
    if protocol == "multipart":
        metadata, mime, content = _related_parts(call)
        await _store(call, store, _display_name(metadata), mime, content)
        return
    mime = call.record.header("content-type") or "application/octet-stream"
    await _store(call, store, "upload", mime, call.record.body)


async def list_files(call: Call, store: GeminiStore) -> None:
    """files.list."""
    files = [_file_view(file_id, stored) for file_id, stored in list(store.files.items())]
    await call.json({"files": files})


async def file_by_id(call: Call, store: GeminiStore, file_id: str) -> None:
    """files.get and files.delete."""
    stored = store.files.get(file_id)
    if stored is None:
        message = f"File {file_id} does not exist."
        await _error(call, 404, payloads.error(404, message, "NOT_FOUND"))
    elif call.record.method == "DELETE":
        del store.files[file_id]
        await call.json({})
    else:
        await call.json(_file_view(file_id, stored))


_VERSION = r"/v1(?:beta|alpha)?"
ROUTES: tuple[tuple[str, re.Pattern[str], Endpoint], ...] = tuple(
    (method, re.compile(_VERSION + pattern + r"\Z"), endpoint)
    for method, pattern, endpoint in [
        ("POST", r"/models/(?P<model>[^/:]+):generateContent", generate),
        ("POST", r"/models/(?P<model>[^/:]+):streamGenerateContent", stream_generate),
        ("POST", r"/models/(?P<model>[^/:]+):embedContent", embed),
        ("POST", r"/models/(?P<model>[^/:]+):batchEmbedContents", batch_embed),
        ("POST", r"/models/(?P<model>[^/:]+):countTokens", count_tokens),
        ("POST", r"/models/(?P<model>[^/:]+):batchGenerateContent", batch_generate),
        ("POST", r"/interactions", interactions),
        ("GET", r"/models", list_models),
        ("GET", r"/models/(?P<model>[^/:]+)", get_model),
    ]
)
_UPLOAD = re.compile(_VERSION.replace("/v1", "/upload/v1") + r"/files\Z")
_FILES = re.compile(_VERSION + r"/files\Z")
_FILE = re.compile(_VERSION + r"/files/(?P<id>[^/:]+)\Z")


class GeminiRouter:
    """Checks the credential, then picks the handler: a canned response first, then the API."""

    def __init__(self, store: GeminiStore) -> None:
        self.store = store

    def _credential_error(self, call: Call) -> tuple[int, Any] | None:
        key = call.record.header("x-goog-api-key")
        if key is None:
            keys = _query(call).get("key")
            key = keys[-1] if keys else None
        if key is None:
            if call.record.header("authorization") is not None:
                return 401, payloads.bad_oauth()
            return 403, payloads.missing_key()
        if key != self.store.api_key:
            return 400, payloads.invalid_key()
        return None

    def __call__(self, call: Call) -> Handler | None:
        upload_id = _query(call).get("upload_id", [""])[0]
        if upload_id in self.store.uploads and _UPLOAD.match(call.record.path):
            return lambda c: _resume(c, self.store, upload_id)
        refused = self._credential_error(call)
        if refused is not None:
            status, body = refused

            async def refuse(c: Call) -> None:
                await _error(c, status, body)

            return refuse
        path = call.record.path
        canned = call.state.canned.get((call.record.method, path))
        canned = canned or call.state.canned.get((None, path))
        if canned is not None:

            async def answer_canned(c: Call) -> None:
                await c.respond(
                    canned.status, canned.body, content_type=None, headers=canned.headers
                )

            return answer_canned
        return self._api(call, path)

    def _api(self, call: Call, path: str) -> Handler | None:
        store = self.store
        if call.record.method == "POST" and _UPLOAD.match(path):
            return lambda c: upload(c, store)
        if call.record.method == "GET" and _FILES.match(path):
            return lambda c: list_files(c, store)
        found = _FILE.match(path)
        if found is not None and call.record.method in ("GET", "DELETE"):
            file_id = found["id"]
            return lambda c: file_by_id(c, store, file_id)
        for method, pattern, endpoint in ROUTES:
            match = pattern.match(path)
            if match is not None and method == call.record.method:
                return _bind(endpoint, match)

        async def not_found(c: Call) -> None:
            message = f"The requested URL {path} was not found on this server."
            await _error(c, 404, payloads.error(404, message, "NOT_FOUND"))

        return not_found


def _bind(endpoint: Endpoint, match: re.Match[str]) -> Handler:
    async def handler(call: Call) -> None:
        await endpoint(call, match)

    return handler
