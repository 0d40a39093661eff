"""The endpoints of the fake Mistral upstream: which path answers what."""

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from tests.support import fake_mistral_payloads as payloads
from tests.support.fake_mistral_app import Call, Handler, sse_data, sse_event
from tests.support.fake_mistral_state import StoredFile

DOWNLOAD_CHUNK = 64 * 1024
Endpoint = Callable[[Call, re.Match[str]], Awaitable[None]]


def _parse_json(call: Call) -> tuple[bool, Any]:
    """(True, value) for a JSON body (empty counts as {}); (False, error body) otherwise."""
    if not call.record.body.strip():
        return True, {}
    try:
        return True, json.loads(call.record.body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        position = getattr(error, "pos", 0)
        return False, payloads.validation_error(str(error), position)


async def _with_json(call: Call, answer: Callable[[Any], Awaitable[None]]) -> None:
    """Answer with `answer(body)`, or with Mistral's 422 when the body is not valid JSON."""
    ok, value = _parse_json(call)
    if not ok:
        await call.json(value, status=422)
        return
    await answer(value if isinstance(value, dict) else {})


def _model(body: dict[str, Any], default: str = payloads.DEFAULT_MODEL) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else default


def _form(call: Call) -> dict[str, payloads.Part]:
    content_type = call.record.header("content-type") or ""
    return payloads.parse_multipart(content_type, call.record.body)


def _form_text(form: dict[str, payloads.Part], name: str, default: str) -> str:
    part = form.get(name)
    return part.content.decode() if part is not None else default


async def completion(call: Call, match: re.Match[str]) -> None:
    """Chat, FIM and agents completions, streamed when the body says so."""
    default = payloads.AGENT_MODEL if "agents" in match.group(0) else payloads.DEFAULT_MODEL

    async def answer(body: dict[str, Any]) -> None:
        model, request_id = _model(body, default), call.state.next_id("cmpl")
        if body.get("stream") is True:
            chunks = payloads.chat_chunks(model, request_id, call.knobs.stream_events)
            await call.stream([sse_data(chunk) for chunk in chunks], b"data: [DONE]\n\n")
        else:
            await call.json(payloads.chat_completion(model, request_id))

    await _with_json(call, answer)


async def embeddings(call: Call, _: re.Match[str]) -> None:
    """Embeddings: one vector per input."""

    async def answer(body: dict[str, Any]) -> None:
        inputs = body.get("inputs", body.get("input", ""))
        count = len(inputs) if isinstance(inputs, list) else 1
        await call.json(payloads.embeddings(_model(body), call.state.next_id("emb"), count))

    await _with_json(call, answer)


async def moderation(call: Call, _: re.Match[str]) -> None:
    """Raw-text and chat moderations."""

    async def answer(body: dict[str, Any]) -> None:
        await call.json(payloads.moderation(_model(body), call.state.next_id("mod")))

    await _with_json(call, answer)


async def classification(call: Call, _: re.Match[str]) -> None:
    """Raw-text and chat classifications."""

    async def answer(body: dict[str, Any]) -> None:
        await call.json(payloads.classification(_model(body), call.state.next_id("cls")))

    await _with_json(call, answer)


async def ocr(call: Call, _: re.Match[str]) -> None:
    """OCR of a document: always OCR_PAGES pages."""

    async def answer(body: dict[str, Any]) -> None:
        model = _model(body, "mistral-ocr-latest")
        await call.json(payloads.ocr(model, call.record.body_size))

    await _with_json(call, answer)


async def transcription(call: Call, _: re.Match[str]) -> None:
    """Audio transcription from a multipart form; SSE when the form says stream=true."""
    form = _form(call)
    model = _form_text(form, "model", "voxtral-mini-latest")
    if _form_text(form, "stream", "false").lower() == "true":
        events = payloads.transcription_events(model, call.knobs.stream_events)
        await call.stream([sse_event(name, data) for name, data in events])
    else:
        await call.json(payloads.transcription(model))


async def speech(call: Call, _: re.Match[str]) -> None:
    """Text to speech: base64 audio in JSON, or SSE deltas ending with usage."""

    async def answer(body: dict[str, Any]) -> None:
        if body.get("stream") is True:
            events = payloads.speech_events(call.knobs.stream_events)
            await call.stream([sse_event(name, data) for name, data in events])
        else:
            await call.json(payloads.speech())

    await _with_json(call, answer)


async def conversation(call: Call, match: re.Match[str]) -> None:
    """Start, append to or restart a conversation, streamed when the body says so."""
    conversation_id = match.group("id") or f"conv_{uuid.uuid4().hex[:12]}"

    async def answer(body: dict[str, Any]) -> None:
        model = _model(body, payloads.AGENT_MODEL)
        if body.get("stream") is True:
            count = call.knobs.stream_events
            events = payloads.conversation_events(conversation_id, model, count)
            await call.stream([sse_event(name, data) for name, data in events])
        else:
            await call.json(payloads.conversation(conversation_id, model))

    await _with_json(call, answer)


def _file_view(file_id: str, stored: StoredFile) -> dict[str, Any]:
    return payloads.file_object(file_id, stored.filename, stored.purpose, stored.size)


async def upload_file(call: Call, _: re.Match[str]) -> None:
    """Store an uploaded file in memory."""
    form = _form(call)
    part = form.get("file")
    file_id = str(uuid.uuid4())
    stored = StoredFile(
        filename=(part.filename if part is not None else None) or "upload",
        purpose=_form_text(form, "purpose", "fine-tune"),
        content=part.content if part is not None else b"",
        size=len(part.content) if part is not None else call.record.body_size,
    )
    call.state.files[file_id] = stored
    await call.json(_file_view(file_id, stored))


async def list_files(call: Call, _: re.Match[str]) -> None:
    """List the stored files."""
    data = [_file_view(file_id, stored) for file_id, stored in list(call.state.files.items())]
    await call.json({"object": "list", "data": data, "total": len(data)})


async def _with_file(
    call: Call, file_id: str, answer: Callable[[StoredFile], Awaitable[None]]
) -> None:
    stored = call.state.files.get(file_id)
    if stored is None:
        await call.json({"detail": "File not found"}, status=404)
    else:
        await answer(stored)


async def get_file(call: Call, match: re.Match[str]) -> None:
    """A stored file's metadata."""

    async def answer(stored: StoredFile) -> None:
        await call.json({**_file_view(match.group("id"), stored), "deleted": False})

    await _with_file(call, match.group("id"), answer)


async def download_file(call: Call, match: re.Match[str]) -> None:
    """A stored file's bytes, exactly as uploaded, in several body messages."""

    async def answer(stored: StoredFile) -> None:
        headers = [("content-type", "application/octet-stream")]
        headers.append(("content-disposition", f'attachment; filename="{stored.filename}"'))
        await call.start(200, headers)
        for offset in range(0, len(stored.content), DOWNLOAD_CHUNK):
            await call.chunk(stored.content[offset : offset + DOWNLOAD_CHUNK])
        await call.end()

    await _with_file(call, match.group("id"), answer)


async def delete_file(call: Call, match: re.Match[str]) -> None:
    """Forget a stored file."""

    async def answer(_: StoredFile) -> None:
        del call.state.files[match.group("id")]
        await call.json({"id": match.group("id"), "object": "file", "deleted": True})

    await _with_file(call, match.group("id"), answer)


async def models(call: Call, _: re.Match[str]) -> None:
    """The model catalogue."""
    await call.json(payloads.models_list())


async def create_job(call: Call, _: re.Match[str]) -> None:
    """Create a batch job (queued)."""

    async def answer(body: dict[str, Any]) -> None:
        job_id = str(uuid.uuid4())
        call.state.jobs[job_id] = payloads.batch_job(job_id, body, "QUEUED")
        await call.json(call.state.jobs[job_id])

    await _with_json(call, answer)


async def list_jobs(call: Call, _: re.Match[str]) -> None:
    """List the batch jobs."""
    data = list(call.state.jobs.values())
    await call.json({"object": "list", "data": data, "total": len(data)})


async def cancel_job(call: Call, match: re.Match[str]) -> None:
    """Ask a batch job to stop; answer with the job."""
    await get_job(call, match, cancel=True)


async def get_job(call: Call, match: re.Match[str], cancel: bool = False) -> None:
    """A batch job; with `cancel`, after asking it to stop."""
    job = call.state.jobs.get(match.group("id"))
    if job is None:
        await call.json({"detail": "Batch job not found"}, status=404)
        return
    if cancel:
        job["status"] = "CANCELLATION_REQUESTED"
    await call.json(job)


async def voices(call: Call, _: re.Match[str]) -> None:
    """GET /v2/audio/voices: the SDK's voices.search()."""
    await call.json(payloads.voices_page())


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("{id}", r"(?P<id>[^/]+)") + "$")


ROUTES: tuple[tuple[str, re.Pattern[str], Endpoint], ...] = tuple(
    (method, _compile(pattern), endpoint)
    for method, pattern, endpoint in [
        ("POST", "/v1/(chat|fim|agents)/completions", completion),
        ("POST", "/v1/embeddings", embeddings),
        ("POST", "/v1/(chat/)?moderations", moderation),
        ("POST", "/v1/(chat/)?classifications", classification),
        ("POST", "/v1/ocr", ocr),
        ("POST", "/v1/audio/transcriptions", transcription),
        ("POST", "/v1/audio/speech", speech),
        ("POST", "/v1/conversations(/{id}(/restart)?)?", conversation),
        ("POST", "/v1/files", upload_file),
        ("GET", "/v1/files", list_files),
        ("GET", "/v1/files/{id}", get_file),
        ("GET", "/v1/files/{id}/content", download_file),
        ("DELETE", "/v1/files/{id}", delete_file),
        ("GET", "/v1/models", models),
        ("POST", "/v1/batch/jobs", create_job),
        ("GET", "/v1/batch/jobs", list_jobs),
        ("GET", "/v1/batch/jobs/{id}", get_job),
        ("POST", "/v1/batch/jobs/{id}/cancel", cancel_job),
        ("GET", "/v2/audio/voices", voices),
    ]
)


def _bind(endpoint: Endpoint, match: re.Match[str]) -> Handler:
    async def handler(call: Call) -> None:
        await endpoint(call, match)

    return handler


def route(call: Call) -> Handler | None:
    """The handler for this call: a canned response first, then the built-in endpoints."""
    path = call.record.path
    prefix = call.knobs.path_prefix.rstrip("/")
    canned = call.state.canned.get((call.record.method, path))
    canned = canned or call.state.canned.get((None, path))
    if canned is not None:

        async def answer_canned(c: Call) -> None:
            await c.respond(canned.status, canned.body, content_type=None, headers=canned.headers)

        return answer_canned
    if prefix:
        if not path.startswith(prefix + "/"):
            return None
        path = path[len(prefix) :]
    for method, pattern, endpoint in ROUTES:
        match = pattern.match(path)
        if match is not None and method == call.record.method:
            return _bind(endpoint, match)
    return None
