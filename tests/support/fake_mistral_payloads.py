"""Response bodies of the fake Mistral upstream, shaped like the `mistralai` SDK's models.

Pure functions of their inputs: the usage numbers are fixed so tests can compute expected cost.
"""

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PROMPT_TOKENS = 10
COMPLETION_TOKENS = 20
TOTAL_TOKENS = PROMPT_TOKENS + COMPLETION_TOKENS
AUDIO_SECONDS = 12
OCR_PAGES = 3
CREATED = 1_700_000_000
CREATED_ISO = "2023-11-14T22:13:20Z"
DEFAULT_MODEL = "mistral-small-latest"
AGENT_MODEL = "mistral-medium-latest"
SPEECH_AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt fake-audio-bytes"

_BOUNDARY = re.compile(rb'boundary="?([^";]+)"?', re.IGNORECASE)
_DISPOSITION_PARAM = re.compile(rb'(\w+)="([^"]*)"')


def usage() -> dict[str, int]:
    """The fixed token usage every text endpoint reports."""
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": TOTAL_TOKENS,
    }


def input_usage() -> dict[str, int]:
    """The fixed usage of endpoints that only read input (embeddings, moderation)."""
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 0, "total_tokens": PROMPT_TOKENS}


def audio_usage() -> dict[str, int]:
    """The fixed usage of a transcription."""
    return {**usage(), "prompt_audio_seconds": AUDIO_SECONDS}


def chat_completion(model: str, request_id: str, text: str = "Hello from the fake.") -> Any:
    """A non-streamed chat, FIM or agents completion."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "model": model,
        "created": CREATED,
        "usage": usage(),
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text, "tool_calls": None},
            }
        ],
    }


def chat_chunks(model: str, request_id: str, count: int) -> Iterator[Any]:
    """`count` streamed completion chunks; the last one finishes and carries the usage."""
    for index in range(count):
        last = index == count - 1
        chunk: dict[str, Any] = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": f"tok{index} "},
                    "finish_reason": "stop" if last else None,
                }
            ],
        }
        if last:
            chunk["usage"] = usage()
        yield chunk


def embeddings(model: str, request_id: str, inputs: int) -> Any:
    """An embeddings response with one small vector per input."""
    data = [
        {"object": "embedding", "embedding": [0.1, 0.2, 0.3], "index": i} for i in range(inputs)
    ]
    return {
        "id": request_id,
        "object": "list",
        "model": model,
        "data": data,
        "usage": input_usage(),
    }


def moderation(model: str, request_id: str) -> Any:
    """A moderation response (chat or raw text)."""
    result = {
        "categories": {"sexual": False, "violence": False},
        "category_scores": {"sexual": 0.01, "violence": 0.02},
    }
    return {"id": request_id, "model": model, "results": [result], "usage": input_usage()}


def classification(model: str, request_id: str) -> Any:
    """A classification response (chat or raw text)."""
    results = [{"intent": {"scores": {"greeting": 0.9, "other": 0.1}}}]
    return {"id": request_id, "model": model, "results": results, "usage": input_usage()}


def ocr(model: str, doc_size_bytes: int) -> Any:
    """An OCR response of OCR_PAGES pages."""
    pages = [
        {
            "index": i,
            "markdown": f"# Page {i + 1}",
            "images": [],
            "dimensions": {"dpi": 200, "height": 2200, "width": 1700},
        }
        for i in range(OCR_PAGES)
    ]
    return {
        "pages": pages,
        "model": model,
        "document_annotation": None,
        "usage_info": {"pages_processed": OCR_PAGES, "doc_size_bytes": doc_size_bytes},
    }


def transcription(model: str) -> Any:
    """A non-streamed transcription."""
    return {"model": model, "text": "hello world", "language": "en", "usage": audio_usage()}


def transcription_events(model: str, count: int) -> Iterator[tuple[str, Any]]:
    """(event name, data) pairs of a streamed transcription, ending with the usage."""
    for index in range(count - 1):
        yield "transcription.text.delta", {"type": "transcription.text.delta", "text": f"w{index} "}
    done = {"type": "transcription.done", **transcription(model)}
    yield "transcription.done", done


def speech() -> Any:
    """A non-streamed speech response (base64 audio)."""
    return {"audio_data": base64.b64encode(SPEECH_AUDIO).decode()}


def speech_events(count: int) -> Iterator[tuple[str, Any]]:
    """(event name, data) pairs of streamed speech, ending with the usage."""
    piece = base64.b64encode(SPEECH_AUDIO).decode()
    for _ in range(count - 1):
        yield "speech.audio.delta", {"type": "speech.audio.delta", "audio_data": piece}
    yield "speech.audio.done", {"type": "speech.audio.done", "usage": usage()}


def conversation(conversation_id: str, model: str) -> Any:
    """A non-streamed conversation response."""
    entry = {
        "object": "entry",
        "type": "message.output",
        "id": f"msg_{conversation_id}",
        "role": "assistant",
        "model": model,
        "created_at": CREATED_ISO,
        "content": "Hello from the fake conversation.",
    }
    return {
        "object": "conversation.response",
        "conversation_id": conversation_id,
        "outputs": [entry],
        "usage": usage(),
    }


def conversation_events(conversation_id: str, model: str, count: int) -> Iterator[tuple[str, Any]]:
    """(event name, data) pairs of a streamed conversation: started, deltas, done with usage."""
    started = {
        "type": "conversation.response.started",
        "conversation_id": conversation_id,
        "created_at": CREATED_ISO,
    }
    yield "conversation.response.started", started
    for index in range(max(count - 2, 1)):
        delta = {
            "type": "message.output.delta",
            "id": f"msg_{conversation_id}",
            "output_index": 0,
            "content_index": 0,
            "model": model,
            "role": "assistant",
            "created_at": CREATED_ISO,
            "content": f"tok{index} ",
        }
        yield "message.output.delta", delta
    done = {"type": "conversation.response.done", "created_at": CREATED_ISO, "usage": usage()}
    yield "conversation.response.done", done


def file_object(file_id: str, filename: str, purpose: str, size: int) -> dict[str, Any]:
    """The metadata of a stored file."""
    sample_type = "batch_request" if purpose == "batch" else "instruct"
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": CREATED,
        "filename": filename,
        "purpose": purpose,
        "sample_type": sample_type,
        "source": "upload",
        "num_lines": None,
        "mimetype": None,
    }


def batch_job(job_id: str, request: Any, status: str) -> dict[str, Any]:
    """A batch job as created from `request`."""
    body = request if isinstance(request, dict) else {}
    return {
        "id": job_id,
        "object": "batch",
        "input_files": list(body.get("input_files") or []),
        "endpoint": body.get("endpoint", "/v1/chat/completions"),
        "model": body.get("model"),
        "agent_id": body.get("agent_id"),
        "metadata": body.get("metadata"),
        "errors": [],
        "status": status,
        "created_at": CREATED,
        "total_requests": 0,
        "completed_requests": 0,
        "succeeded_requests": 0,
        "failed_requests": 0,
    }


def models_list() -> Any:
    """The model catalogue."""
    capabilities = {"completion_chat": True, "function_calling": True, "completion_fim": False}
    cards = [
        {
            "id": name,
            "object": "model",
            "type": "base",
            "created": CREATED,
            "owned_by": "mistralai",
            "capabilities": capabilities,
            "max_context_length": 32768,
        }
        for name in (DEFAULT_MODEL, "mistral-large-latest", "mistral-ocr-latest")
    ]
    return {"object": "list", "data": cards}


def voices_page() -> Any:
    """The /v2/audio/voices search result."""
    voice = {
        "id": "voice_fake",
        "name": "Fake Voice",
        "created_at": CREATED_ISO,
        "user_id": None,
        "type": "preset",
        "languages": ["en"],
    }
    return {"data": [voice], "next_page_token": None}


def validation_error(message: str, position: int) -> Any:
    """The 422 body Mistral returns for a request body that is not valid JSON."""
    detail = {
        "type": "json_invalid",
        "loc": ["body", position],
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": message},
    }
    return {"detail": [detail]}


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content: bytes


def parse_multipart(content_type: str, body: bytes) -> dict[str, Part]:
    """Parse a multipart/form-data body into its parts by field name (last one wins)."""
    found = _BOUNDARY.search(content_type.encode("latin-1"))
    if found is None:
        return {}
    delimiter = b"--" + found.group(1)
    parts: dict[str, Part] = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        params: dict[bytes, bytes] = {}
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-disposition:"):
                params = dict(_DISPOSITION_PARAM.findall(line))
        name = params.get(b"name", b"").decode()
        filename = params.get(b"filename")
        parts[name] = Part(
            name=name,
            filename=filename.decode() if filename is not None else None,
            content=content.removesuffix(b"\r\n"),
        )
    return parts
