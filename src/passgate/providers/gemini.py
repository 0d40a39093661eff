"""Gemini (Google AI Studio): ``/gemini/...`` to the Generative Language API, natively.

The caller's gateway key may come where Google's clients put an API key: the ``key``
query parameter (LiteLLM's examples), ``x-goog-api-key`` (the google-genai SDK) or
``Authorization: Bearer``. The real key goes upstream as ``x-goog-api-key``.

Usage is Google's ``usageMetadata``: ``promptTokenCount`` counts the cached tokens too
(``cachedContentTokenCount``), and ``thoughtsTokenCount`` is billed as output but not
counted in ``candidatesTokenCount``, so completion = candidates + thoughts. A stream
repeats ``usageMetadata`` on every event with the counts so far; the last one is final.
The Interactions API reports the same counts in snake_case under ``usage``.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import unquote

from passgate.exchange import Metered, RequestInfo, Usage
from passgate.providers.base import ProviderSpec
from passgate.providers.shapes import MAX_COUNT, count

NAME = "gemini"

TOKENS = "tokens"
EMBED = "embed"
INTERACTIONS = "interactions"

# "/v1beta/models/gemini-2.5-flash:generateContent": version, collection, id, custom method
_MODEL_PATH = re.compile(r"/v\d+[a-z0-9]*/(models|tunedModels)/([^/:]+)(?::([A-Za-z]+))?/?\Z")

# "/v1beta/interactions": the Interactions API (model in the body, snake_case usage)
_INTERACTIONS_PATH = re.compile(r"/v\d+[a-z0-9]*/interactions/?\Z")

_GENERATE = Metered(kind=TOKENS)
_INTERACT = Metered(kind=INTERACTIONS)
_EMBED = Metered(kind=EMBED)
_COUNT = Metered(kind=TOKENS, free=True)
# The custom methods whose answer carries usageMetadata (or, for countTokens, is free).
# batchGenerateContent and asyncBatchEmbedContent answer with a long-running operation
# and no usage; the results, fetched later and possibly more than once, are not metered.
_METERED_METHODS = MappingProxyType(
    {
        "generateContent": _GENERATE,
        "streamGenerateContent": _GENERATE,
        "embedContent": _EMBED,
        "batchEmbedContents": _EMBED,
        "countTokens": _COUNT,
    }
)


def _sum(first: int | None, second: int | None) -> int | None:
    """Two optional counts added, None only when both are missing."""
    if first is None:
        return second
    if second is None:
        return first
    return min(first + second, MAX_COUNT)


def usage_from_metadata(metadata: Any) -> Usage | None:
    """The normalised usage of one ``usageMetadata`` object, or None when it has no counts."""
    if not isinstance(metadata, dict):
        return None
    prompt = count(metadata.get("promptTokenCount"))
    # tool results fed back to the model (search, code execution) are billed as input
    tool_prompt = count(metadata.get("toolUsePromptTokenCount"))
    candidates = count(metadata.get("candidatesTokenCount"))
    thoughts = count(metadata.get("thoughtsTokenCount"))
    total = count(metadata.get("totalTokenCount"))
    prompt = _sum(prompt, tool_prompt)
    completion = _sum(candidates, thoughts)
    if prompt is None and completion is None and total is None:
        return None
    cached = count(metadata.get("cachedContentTokenCount"))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        total_tokens=total,
        reasoning_tokens=thoughts,
    )


def usage_from_interaction(usage: Any) -> Usage | None:
    """The normalised usage of an Interactions API ``usage`` object, or None without counts."""
    if not isinstance(usage, dict):
        return None
    prompt = _sum(count(usage.get("total_input_tokens")), count(usage.get("total_tool_use_tokens")))
    thoughts = count(usage.get("total_thought_tokens"))
    completion = _sum(count(usage.get("total_output_tokens")), thoughts)
    total = count(usage.get("total_tokens"))
    if prompt is None and completion is None and total is None:
        return None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=count(usage.get("total_cached_tokens")),
        total_tokens=total,
        reasoning_tokens=thoughts,
    )


def _interaction_usage(obj: Any) -> Usage | None:
    """An Interaction's usage, or that of the interaction a stream event carries."""
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if usage is None:
        nested = obj.get("interaction")  # interaction.created / interaction.completed events
        usage = nested.get("usage") if isinstance(nested, dict) else None
    return usage_from_interaction(usage)


def _event_usage(obj: Any, kind: str = TOKENS) -> Usage | None:
    if kind == INTERACTIONS:
        return _interaction_usage(obj)
    if isinstance(obj, dict):
        return usage_from_metadata(obj.get("usageMetadata"))
    return None


def _merge(so_far: Usage, new: Usage) -> Usage:
    """Counts of a later event replace those of an earlier one; missing ones are kept."""
    return Usage(
        prompt_tokens=so_far.prompt_tokens if new.prompt_tokens is None else new.prompt_tokens,
        completion_tokens=(
            so_far.completion_tokens if new.completion_tokens is None else new.completion_tokens
        ),
        cached_tokens=so_far.cached_tokens if new.cached_tokens is None else new.cached_tokens,
        total_tokens=so_far.total_tokens if new.total_tokens is None else new.total_tokens,
        reasoning_tokens=(
            so_far.reasoning_tokens if new.reasoning_tokens is None else new.reasoning_tokens
        ),
    )


def _path_match(api_path: str) -> re.Match[str] | None:
    # A client may percent-encode the ":" before the method; Google decodes it, so must we,
    # or a metered call (and the model a key is restricted to) would go unseen.
    if "%" in api_path:
        api_path = unquote(api_path)
    return _MODEL_PATH.match(api_path)


class GeminiSpec(ProviderSpec):
    """Google AI Studio's Gemini API under ``/gemini``."""

    name: ClassVar[str] = NAME
    prefix: ClassVar[bytes] = b"/gemini"
    gen_ai_system: ClassVar[str] = "gcp.gemini"
    default_base: ClassVar[str] = "https://generativelanguage.googleapis.com"
    base_env: ClassVar[tuple[str, ...]] = ("GEMINI_API_BASE",)
    key_env: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY",)
    default_version: ClassVar[bytes] = b"v1beta"
    # the google-genai SDK sends its API key here; LiteLLM's examples use ?key=
    caller_key_headers: ClassVar[tuple[bytes, ...]] = (b"x-goog-api-key",)
    caller_key_query: ClassVar[bytes | None] = b"key"
    # usageMetadata (generateContent, embeddings); usage (Interactions API)
    usage_keys: ClassVar[tuple[bytes, ...]] = (b"usageMetadata", b"usage")
    # modelVersion (generateContent); model (Interactions API)
    model_keys: ClassVar[tuple[bytes, ...]] = (b"modelVersion", b"model")
    prices_file: ClassVar[str] = "gemini.json"

    def credential(self, key: str) -> tuple[str, str]:
        """Google's API key header."""
        return ("x-goog-api-key", key)

    def api_path(self, sub_path: bytes) -> bytes:
        """As for every provider, except that media uploads keep their own path: Google
        serves them under ``/upload/{version}/...``, with the version second."""
        if sub_path.startswith(b"/upload/v"):
            return sub_path
        return super().api_path(sub_path)

    def metered(self, method: str, api_path: str, info: RequestInfo) -> Metered | None:
        """Generation, interactions and embeddings are metered, token counting is free, the
        rest is not (a GET of an interaction replays it: its usage was counted when made)."""
        if method != "POST":
            return None
        if _INTERACTIONS_PATH.match(api_path):
            return _INTERACT
        match = _path_match(api_path)
        if match is None or match.group(3) is None:
            return None
        return _METERED_METHODS.get(match.group(3))

    def streamed(self, api_path: str, info: RequestInfo) -> bool:
        """``:streamGenerateContent`` streams whatever the body says."""
        return info.stream or api_path.endswith("streamGenerateContent")

    def model_from_path(self, api_path: str) -> str | None:
        """``gemini-2.5-flash`` for ``/v1beta/models/gemini-2.5-flash:generateContent``.

        A tuned model keeps its collection (``tunedModels/x``) so that a key's model
        allowlist, which names base models, never matches it by accident.
        """
        match = _path_match(api_path)
        if match is None:
            return None
        if match.group(1) == "models":
            return match.group(2)
        return f"tunedModels/{match.group(2)}"

    def usage(self, obj: Any, metered: Metered, info: RequestInfo) -> Usage | None:
        """``usageMetadata`` of a response; of the last element that has one in a JSON array
        (``streamGenerateContent`` without ``alt=sse`` answers with an array of events);
        an Interaction's ``usage``."""
        if isinstance(obj, list):
            for item in reversed(obj):
                found = _event_usage(item, metered.kind)
                if found is not None:
                    return found
            return None
        return _event_usage(obj, metered.kind)

    def stream_usage(self, obj: Any, so_far: Usage | None, metered: Metered) -> Usage | None:
        """Each event's usage holds the counts so far: the latest one wins."""
        new = _event_usage(obj, metered.kind)
        if new is None:
            return so_far
        if so_far is None:
            return new
        return _merge(so_far, new)

    def response_model(self, obj: Any) -> str | None:
        """``modelVersion`` of a response, stream event or the first element of an array;
        ``model`` of an Interaction or of the interaction a stream event carries."""
        if isinstance(obj, list):
            obj = obj[0] if obj else None
        if not isinstance(obj, dict):
            return None
        model = obj.get("modelVersion") or obj.get("model")
        if model is None:
            nested = obj.get("interaction")
            model = nested.get("model") if isinstance(nested, dict) else None
        return model if isinstance(model, str) and model else None
