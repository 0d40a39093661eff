"""Answers of the fake Cohere upstream, shaped as Cohere sends them, with FIXED billed units.

The billed units differ from the raw ``tokens`` on purpose (as they do at Cohere), so a test
can tell which of the two the gateway priced.
"""

from collections.abc import Iterator
from typing import Any

# chat (v1 and v2, whole or streamed)
BILLED_INPUT = 50
BILLED_OUTPUT = 26
CACHED = 12  # part of the billed input
RAW_INPUT = 793
RAW_OUTPUT = 61
# embed (v1 and v2)
EMBED_BILLED_INPUT = 7
# rerank (v1 and v2)
SEARCH_UNITS = 2
# parse
PARSED_PAGES = 3

DEFAULT_MODEL = "command-a-03-2025"
TEXT = ["The", " fake", " says", " hello."]


def chat_usage() -> dict[str, Any]:
    """The ``usage`` object of a v2 chat (and of its ``message-end`` event)."""
    return {
        "billed_units": {"input_tokens": BILLED_INPUT, "output_tokens": BILLED_OUTPUT},
        "tokens": {"input_tokens": RAW_INPUT, "output_tokens": RAW_OUTPUT},
        "cached_tokens": CACHED,
    }


def meta(version: str, billed: dict[str, int], tokens: dict[str, int] | None = None) -> Any:
    """The ``meta`` object of v1 answers and of v2 embed, rerank and parse."""
    found: dict[str, Any] = {"api_version": {"version": version}, "billed_units": billed}
    if tokens is not None:
        found["tokens"] = tokens
    return found


def chat_meta() -> Any:
    """``meta`` of a v1 chat."""
    return {
        **meta(
            "1",
            {"input_tokens": BILLED_INPUT, "output_tokens": BILLED_OUTPUT},
            {"input_tokens": RAW_INPUT, "output_tokens": RAW_OUTPUT},
        ),
        "cached_tokens": CACHED,
    }


def v2_chat(request_id: str) -> Any:
    """A whole ``POST /v2/chat`` answer."""
    return {
        "id": request_id,
        "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "".join(TEXT)}]},
        "usage": chat_usage(),
    }


def v2_chat_events(request_id: str) -> Iterator[tuple[str, Any]]:
    """The SSE events of a streamed v2 chat: (event name, data object)."""
    yield (
        "message-start",
        {
            "id": request_id,
            "type": "message-start",
            "delta": {
                "message": {
                    "role": "assistant",
                    "content": [],
                    "tool_plan": "",
                    "tool_calls": [],
                    "citations": [],
                }
            },
        },
    )
    yield (
        "content-start",
        {
            "type": "content-start",
            "index": 0,
            "delta": {"message": {"content": {"type": "text", "text": ""}}},
        },
    )
    for piece in TEXT:
        yield (
            "content-delta",
            {
                "type": "content-delta",
                "index": 0,
                "delta": {"message": {"content": {"text": piece}}},
            },
        )
    yield ("content-end", {"type": "content-end", "index": 0})
    yield (
        "message-end",
        {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": chat_usage()}},
    )


def v1_chat(request_id: str, message: str) -> Any:
    """A whole ``POST /v1/chat`` answer."""
    text = "".join(TEXT)
    return {
        "response_id": request_id,
        "text": text,
        "generation_id": "gen-" + request_id,
        "chat_history": [
            {"role": "USER", "message": message},
            {"role": "CHATBOT", "message": text},
        ],
        "finish_reason": "COMPLETE",
        "meta": chat_meta(),
    }


def v1_chat_lines(request_id: str, message: str) -> Iterator[Any]:
    """The JSON lines of a streamed v1 chat, ``stream-end`` last with the whole answer."""
    yield {"is_finished": False, "event_type": "stream-start", "generation_id": "gen-" + request_id}
    for piece in TEXT:
        yield {"is_finished": False, "event_type": "text-generation", "text": piece}
    yield {
        "is_finished": True,
        "event_type": "stream-end",
        "response": v1_chat(request_id, message),
        "finish_reason": "COMPLETE",
    }


def embed(request_id: str, version: str, texts: list[str], embedding_types: list[str]) -> Any:
    """An embed answer: one vector per text, by type (v2 always; v1 when types were asked)."""
    vectors = [[0.015, -0.027, 0.031] for _ in texts]
    body: dict[str, Any] = {"id": request_id, "texts": texts}
    if version == "1" and not embedding_types:
        body |= {"response_type": "embeddings_floats", "embeddings": vectors}
    else:
        by_type = {kind: vectors for kind in (embedding_types or ["float"])}
        body |= {"response_type": "embeddings_by_type", "embeddings": by_type}
    body["meta"] = meta(version, {"input_tokens": EMBED_BILLED_INPUT})
    return body


def rerank(request_id: str, version: str, documents: int, top_n: int | None) -> Any:
    """A rerank answer: the documents in reverse order, best first."""
    count = documents if top_n is None else min(top_n, documents)
    results = [
        {"index": documents - 1 - rank, "relevance_score": round(0.9 - rank * 0.1, 3)}
        for rank in range(count)
    ]
    return {
        "id": request_id,
        "results": results,
        "meta": meta(version, {"search_units": SEARCH_UNITS}),
    }


def parse(request_id: str) -> Any:
    """A ``POST /v2/parse`` answer."""
    pages = [{"page_number": n + 1, "markdown": f"# Page {n + 1}"} for n in range(PARSED_PAGES)]
    return {
        "id": request_id,
        "pages": pages,
        "finish_reason": "COMPLETE",
        "meta": meta("2", {"pages": PARSED_PAGES}),
    }


def models_list() -> Any:
    """``GET /v1/models``."""
    return {
        "models": [
            {
                "name": DEFAULT_MODEL,
                "endpoints": ["generate", "chat", "summarize"],
                "finetuned": False,
                "context_length": 256000,
                "features": ["tools", "strict_tools"],
            },
            {
                "name": "embed-v4.0",
                "endpoints": ["embed"],
                "finetuned": False,
                "context_length": 128000,
            },
            {"name": "rerank-v3.5", "endpoints": ["rerank"], "finetuned": False},
        ]
    }


def error(request_id: str, message: str) -> Any:
    """Cohere's error body."""
    return {"id": request_id, "message": message}
