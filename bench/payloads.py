"""The bodies the benchmark sends and its fake upstreams answer."""

import json
from typing import Any

MODEL = "mistral-small-latest"
USAGE = {"prompt_tokens": 12, "completion_tokens": 24, "total_tokens": 36}
STREAM_EVENTS = 20  # chunks per streamed answer, the last with usage; then `data: [DONE]`
UPLOAD_BYTES = 10 * 1024 * 1024
BOUNDARY = "passgate-bench-boundary-7d1c"

CHAT_REQUEST: bytes = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32}
).encode()

STREAM_REQUEST: bytes = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "stream": True}
).encode()

CHAT_RESPONSE: dict[str, Any] = {
    "id": "cmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help?"},
            "finish_reason": "stop",
        }
    ],
    "usage": USAGE,
}


def stream_events() -> list[bytes]:
    """The SSE events of one streamed chat: STREAM_EVENTS chunks, then `data: [DONE]`."""
    events = []
    for index in range(STREAM_EVENTS):
        last = index == STREAM_EVENTS - 1
        chunk: dict[str, Any] = {
            "id": "cmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": f"token{index} "},
                    "finish_reason": "stop" if last else None,
                }
            ],
        }
        if last:
            chunk["usage"] = USAGE
        events.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def upload_body() -> bytes:
    """A multipart/form-data body holding a file of UPLOAD_BYTES bytes (as the SDK sends)."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="bench.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    # method and url are OpenAI's batch fields: LiteLLM checks for them, Mistral ignores them.
    line = (
        b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions",'
        b'"body":{"messages":[{"role":"user","content":"hi"}]}}\n'
    )
    content = line * -(-UPLOAD_BYTES // len(line))  # whole lines, at least UPLOAD_BYTES
    return head + content + f"\r\n--{BOUNDARY}--\r\n".encode()


UPLOAD_CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
