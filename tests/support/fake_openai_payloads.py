"""Answers of the fake OpenAI upstream, shaped as OpenAI's API reference shows them.

Usage numbers are fixed so tests can compute exact costs from the catalog.
"""

import base64
import time
from typing import Any

# chat completions: 23 prompt tokens of which 7 cached, 41 completion tokens of which 13 reasoning
CHAT_USAGE = {
    "prompt_tokens": 23,
    "completion_tokens": 41,
    "total_tokens": 64,
    "prompt_tokens_details": {"cached_tokens": 7, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 13,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
# the responses API: 31 input tokens of which 11 cached, 52 output tokens of which 20 reasoning
RESPONSE_USAGE = {
    "input_tokens": 31,
    "input_tokens_details": {"cached_tokens": 11},
    "output_tokens": 52,
    "output_tokens_details": {"reasoning_tokens": 20},
    "total_tokens": 83,
}
EMBEDDING_USAGE = {"prompt_tokens": 8, "total_tokens": 8}
TRANSCRIPTION_TOKENS = {
    "type": "tokens",
    "input_tokens": 120,
    "input_token_details": {"text_tokens": 0, "audio_tokens": 120},
    "output_tokens": 30,
    "total_tokens": 150,
}
TRANSCRIPTION_SECONDS = 42  # whisper-1: usage {"type": "duration", "seconds": 42}
VERBOSE_DURATION = 12.5  # a verbose_json answer's duration
SPEECH_USAGE = {"input_tokens": 14, "output_tokens": 101, "total_tokens": 115}
IMAGE_USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
    "output_tokens": 4160,
    "total_tokens": 4210,
}
SPEECH_AUDIO = b"ID3\x04\x00fake-mp3-frames" * 64
FILE_CONTENT = b'{"custom_id": "r1", "response": {"status_code": 200}}\n'
# a 1x1 transparent PNG: what b64_json decodes to
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def now() -> int:
    """Seconds since the epoch, as OpenAI's ``created`` fields."""
    return int(time.time())


def invalid_key() -> dict[str, Any]:
    """OpenAI's 401 for a wrong key (the real one quotes a masked key; this one none)."""
    return {
        "error": {
            "message": "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def missing_key() -> dict[str, Any]:
    """OpenAI's 401 when no key is sent."""
    return {
        "error": {
            "message": "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def not_found(path: str) -> dict[str, Any]:
    """OpenAI's 404 for an unknown URL."""
    return {
        "error": {
            "message": f"Invalid URL ({path})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def chat_completion(model: str, cid: str) -> dict[str, Any]:
    """A whole chat completion."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": CHAT_USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }


def chat_chunks(model: str, cid: str, count: int, include_usage: bool) -> list[dict[str, Any]]:
    """A streamed chat completion: role, content deltas, finish; with ``include_usage`` every
    chunk has ``usage: null`` and a last chunk without choices carries the usage."""
    created = now()
    words = ["Hel", "lo", " there", "!", " How", " can", " I", " help", "?"]
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": "", "refusal": None}]
    deltas += [{"content": words[i % len(words)]} for i in range(max(count - 2, 1))]
    chunks = []
    for index, delta in enumerate([*deltas, {}]):
        finish = "stop" if index == len(deltas) else None
        chunk: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            chunk["usage"] = None
        chunks.append(chunk)
    if include_usage:
        chunks.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": CHAT_USAGE,
            }
        )
    return chunks


def response(model: str, rid: str, status: str = "completed") -> dict[str, Any]:
    """A responses-API response object (usage null until it is completed)."""
    done = status == "completed"
    return {
        "id": rid,
        "object": "response",
        "created_at": now(),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_" + rid,
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello there!", "annotations": []}],
            }
        ]
        if done
        else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": RESPONSE_USAGE if done else None,
    }


def response_events(model: str, rid: str, deltas: int) -> list[tuple[str, dict[str, Any]]]:
    """A streamed response: created, in_progress, text deltas, done events, completed."""
    item = "msg_" + rid
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": response(model, rid, "in_progress")}),
        ("response.in_progress", {"response": response(model, rid, "in_progress")}),
        (
            "response.output_item.added",
            {
                "output_index": 0,
                "item": {"id": item, "type": "message", "role": "assistant", "content": []},
            },
        ),
    ]
    events += [
        (
            "response.output_text.delta",
            {"item_id": item, "output_index": 0, "content_index": 0, "delta": "Hi"},
        )
        for _ in range(max(deltas, 1))
    ]
    events += [
        (
            "response.output_text.done",
            {"item_id": item, "output_index": 0, "content_index": 0, "text": "Hi"},
        ),
        ("response.completed", {"response": response(model, rid)}),
    ]
    return [
        (name, {"type": name, "sequence_number": index, **data})
        for index, (name, data) in enumerate(events)
    ]


def embeddings(model: str, count: int) -> dict[str, Any]:
    """One vector per input."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": [0.0023, -0.0093, 0.0158]}
            for i in range(count)
        ],
        "model": model,
        "usage": EMBEDDING_USAGE,
    }


def transcription(model: str, response_format: str) -> dict[str, Any]:
    """A transcription: tokens for the gpt-4o models, seconds for whisper, a verbose answer's
    duration (and no usage) for ``verbose_json``."""
    if response_format == "verbose_json":
        return {
            "task": "transcribe",
            "language": "english",
            "duration": VERBOSE_DURATION,
            "text": "Hello there.",
            "segments": [],
        }
    if model.startswith("whisper"):
        return {
            "text": "Hello there.",
            "usage": {"type": "duration", "seconds": TRANSCRIPTION_SECONDS},
        }
    return {"text": "Hello there.", "usage": TRANSCRIPTION_TOKENS}


def transcription_events() -> list[tuple[str, dict[str, Any]]]:
    """A streamed transcription (gpt-4o models): deltas, then the text with its usage."""
    return [
        ("transcript.text.delta", {"type": "transcript.text.delta", "delta": "Hello"}),
        ("transcript.text.delta", {"type": "transcript.text.delta", "delta": " there."}),
        (
            "transcript.text.done",
            {"type": "transcript.text.done", "text": "Hello there.", "usage": TRANSCRIPTION_TOKENS},
        ),
    ]


def speech_events() -> list[tuple[str, dict[str, Any]]]:
    """Speech streamed as SSE (``stream_format: "sse"``): audio deltas, then the usage."""
    chunk = base64.b64encode(SPEECH_AUDIO[:32]).decode()
    return [
        ("speech.audio.delta", {"type": "speech.audio.delta", "audio": chunk}),
        ("speech.audio.delta", {"type": "speech.audio.delta", "audio": chunk}),
        ("speech.audio.done", {"type": "speech.audio.done", "usage": SPEECH_USAGE}),
    ]


def images(model: str, count: int) -> dict[str, Any]:
    """Generated (or edited) images as base64, with token usage for the gpt-image models."""
    data = [{"b64_json": base64.b64encode(PNG).decode()} for _ in range(count)]
    answer: dict[str, Any] = {"created": now(), "data": data}
    if model.startswith("gpt-image"):
        answer |= {"background": "opaque", "output_format": "png", "usage": IMAGE_USAGE}
    return answer


def image_events(count: int) -> list[tuple[str, dict[str, Any]]]:
    """A streamed generation: a partial image, then one completed event per image."""
    b64 = base64.b64encode(PNG).decode()
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "image_generation.partial_image",
            {"type": "image_generation.partial_image", "partial_image_index": 0, "b64_json": b64},
        )
    ]
    events += [
        (
            "image_generation.completed",
            {"type": "image_generation.completed", "b64_json": b64, "usage": IMAGE_USAGE},
        )
        for _ in range(count)
    ]
    return events


def moderation(model: str, mid: str) -> dict[str, Any]:
    """A moderation result (OpenAI reports no usage here)."""
    return {
        "id": mid,
        "model": model,
        "results": [{"flagged": False, "categories": {}, "category_scores": {}}],
    }


def models() -> dict[str, Any]:
    """The model list."""
    names = ["gpt-4o", "gpt-4o-mini", "gpt-5", "text-embedding-3-small", "whisper-1"]
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 1715367049, "owned_by": "system"}
            for name in names
        ],
    }
