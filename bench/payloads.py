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


ANTHROPIC_MODEL = "claude-sonnet-4-6"
ANTHROPIC_REQUEST: bytes = json.dumps(
    {
        "model": ANTHROPIC_MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello."}],
        "stream": True,
    }
).encode()


def anthropic_events() -> list[bytes]:
    """The SSE events of one streamed Anthropic message: message_start (the input usage),
    STREAM_EVENTS text deltas, message_delta (the output usage), message_stop."""

    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: ".encode() + json.dumps(data).encode() + b"\n\n"

    usage = {"input_tokens": 12, "cache_read_input_tokens": 0, "output_tokens": 1}
    start = {"id": "msg_bench", "type": "message", "role": "assistant", "content": []}
    events = [
        event("message_start", {"type": "message_start", "message": {**start, "usage": usage}}),
        event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        ),
    ]
    for index in range(STREAM_EVENTS):
        delta = {"type": "text_delta", "text": f"token{index} "}
        events.append(
            event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
        )
    events += [
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 24},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ]
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
