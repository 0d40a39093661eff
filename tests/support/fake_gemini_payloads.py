"""What the fake Gemini upstream answers: Google's response shapes with FIXED usage numbers.

Every generateContent answer reports the same usageMetadata, so tests can compute an exact
cost: PROMPT_TOKENS (of which CACHED_TOKENS when the request names a ``cachedContent``),
CANDIDATE_TOKENS and THOUGHT_TOKENS. A stream reports growing counts on each event and the
same final counts on its last one. Embeddings report EMBED_TOKENS per content.
"""

import json
import re
from typing import Any

API_KEY = "fake-gemini-key"
PROMPT_TOKENS = 1200
CACHED_TOKENS = 1000  # part of PROMPT_TOKENS, reported only for a request with cachedContent
CANDIDATE_TOKENS = 300
THOUGHT_TOKENS = 200
TOTAL_TOKENS = PROMPT_TOKENS + CANDIDATE_TOKENS + THOUGHT_TOKENS
EMBED_TOKENS = 7  # per content embedded
EMBED_DIMENSIONS = 8

# A JSON string, or a comma followed only by blanks and a closing bracket.
_STRING_OR_TRAILING_COMMA = re.compile(r'("(?:\\.|[^"\\])*")|,(\s*[}\]])')


def loads_lenient(body: bytes) -> Any:
    """Parse a request body the way Google's JSON reader does: trailing commas are allowed
    (LiteLLM's pass-through examples send them). Raises ValueError when it is not JSON."""
    text = body.decode("utf-8")
    return json.loads(_STRING_OR_TRAILING_COMMA.sub(lambda m: m.group(1) or m.group(2), text))


def error(code: int, message: str, status: str, details: list[Any] | None = None) -> Any:
    """Google's error body (google.rpc.Status as JSON)."""
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        body["details"] = details
    return {"error": body}


def invalid_key() -> Any:
    """HTTP 400: what the Gemini API answers to a wrong API key."""
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    return error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", [info])


def missing_key() -> Any:
    """HTTP 403: what the Gemini API answers to a call with no credential at all."""
    return error(
        403,
        "Method doesn't allow unregistered callers (callers without established identity)."
        " Please use API Key or other form of API consumer identity to call this API.",
        "PERMISSION_DENIED",
    )


def bad_oauth() -> Any:
    """HTTP 401: what the Gemini API answers to an Authorization header that is no OAuth token."""
    return error(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token,"
        " login cookie or other valid authentication credential.",
        "UNAUTHENTICATED",
    )


def usage_metadata(cached: bool, candidates: int, thoughts: int | None) -> dict[str, Any]:
    """A usageMetadata object with the fixed prompt and the given output counts."""
    usage: dict[str, Any] = {
        "promptTokenCount": PROMPT_TOKENS,
        "candidatesTokenCount": candidates,
        "totalTokenCount": PROMPT_TOKENS + candidates + (thoughts or 0),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}],
    }
    if cached:
        usage["cachedContentTokenCount"] = CACHED_TOKENS
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": CACHED_TOKENS}]
    if thoughts is not None:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def generate_response(model: str, response_id: str, cached: bool) -> dict[str, Any]:
    """A whole GenerateContentResponse."""
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": "A fixed answer."}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": usage_metadata(cached, CANDIDATE_TOKENS, THOUGHT_TOKENS),
        "modelVersion": model,
        "responseId": response_id,
    }


def stream_events(model: str, response_id: str, cached: bool, count: int) -> list[Any]:
    """``count`` GenerateContentResponse chunks; each carries the usage so far, the last
    one the final counts (thoughts are reported once thinking is over, from the first)."""
    count = max(count, 1)
    events = []
    for index in range(count):
        last = index == count - 1
        candidates = CANDIDATE_TOKENS if last else CANDIDATE_TOKENS * (index + 1) // count
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": f"part {index} "}], "role": "model"},
            "index": 0,
        }
        if last:
            candidate["finishReason"] = "STOP"
        events.append(
            {
                "candidates": [candidate],
                "usageMetadata": usage_metadata(cached, candidates, THOUGHT_TOKENS),
                "modelVersion": model,
                "responseId": response_id,
            }
        )
    return events


def embedding(index: int) -> dict[str, Any]:
    """One ContentEmbedding."""
    return {"values": [round(0.01 * (index + 1) * (d + 1), 4) for d in range(EMBED_DIMENSIONS)]}


def embed_response() -> dict[str, Any]:
    """An EmbedContentResponse."""
    usage = {"promptTokenCount": EMBED_TOKENS, "totalTokenCount": EMBED_TOKENS}
    return {"embedding": embedding(0), "usageMetadata": usage}


def batch_embed_response(count: int) -> dict[str, Any]:
    """A BatchEmbedContentsResponse for ``count`` requests."""
    tokens = EMBED_TOKENS * count
    return {
        "embeddings": [embedding(index) for index in range(count)],
        "usageMetadata": {"promptTokenCount": tokens, "totalTokenCount": tokens},
    }


def count_tokens_response(cached: bool) -> dict[str, Any]:
    """A CountTokensResponse (no usageMetadata: counting is free)."""
    body: dict[str, Any] = {
        "totalTokens": PROMPT_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}],
    }
    if cached:
        body["cachedContentTokenCount"] = CACHED_TOKENS
    return body


def model_info(name: str) -> dict[str, Any]:
    """A Model resource."""
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


MODELS = ("gemini-3.5-flash", "gemini-3.1-pro-preview", "gemini-embedding-001")


def models_page() -> dict[str, Any]:
    """A ListModelsResponse."""
    return {"models": [model_info(name) for name in MODELS]}


def batch_operation(model: str, batch_id: str) -> dict[str, Any]:
    """The long-running operation batchGenerateContent answers with (no usage yet)."""
    return {
        "name": f"batches/{batch_id}",
        "metadata": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{model}",
            "name": f"batches/{batch_id}",
            "state": "BATCH_STATE_PENDING",
        },
    }


def file_resource(file_id: str, display_name: str, mime_type: str, size: int) -> dict[str, Any]:
    """A File resource."""
    return {
        "name": f"files/{file_id}",
        "displayName": display_name,
        "mimeType": mime_type,
        "sizeBytes": str(size),
        "state": "ACTIVE",
        "uri": f"https://generativelanguage.googleapis.com/v1beta/files/{file_id}",
        "source": "UPLOADED",
    }


def interaction_usage(cached: bool) -> dict[str, Any]:
    """The Interactions API's usage object for the same fixed counts."""
    usage: dict[str, Any] = {
        "total_input_tokens": PROMPT_TOKENS,
        "total_output_tokens": CANDIDATE_TOKENS,
        "total_thought_tokens": THOUGHT_TOKENS,
        "total_tokens": TOTAL_TOKENS,
        "input_tokens_by_modality": [{"modality": "text", "tokens": PROMPT_TOKENS}],
    }
    if cached:
        usage["total_cached_tokens"] = CACHED_TOKENS
    return usage


def interaction(model: str, interaction_id: str, cached: bool) -> dict[str, Any]:
    """A completed Interaction (POST /v1beta/interactions)."""
    return {
        "id": interaction_id,
        "status": "completed",
        "model": model,
        "role": "model",
        "outputs": [{"type": "text", "text": "A fixed answer."}],
        "usage": interaction_usage(cached),
    }


def interaction_events(model: str, interaction_id: str, cached: bool, count: int) -> list[Any]:
    """(event name, data) of a streamed interaction: created, ``count`` text deltas, completed
    (the only event with usage)."""
    created = {"id": interaction_id, "status": "in_progress", "model": model}
    events: list[Any] = [("interaction.created", {"interaction": created})]
    events.append(("step.start", {"index": 0, "step": {"type": "model_output"}}))
    for index in range(max(count, 1)):
        delta = {"index": 0, "delta": {"type": "text", "text": f"part {index} "}}
        events.append(("step.delta", delta))
    events.append(("step.stop", {"index": 0}))
    done = {**interaction(model, interaction_id, cached), "outputs": []}
    events.append(("interaction.completed", {"interaction": done}))
    return [(name, {"event_type": name, **data}) for name, data in events]
