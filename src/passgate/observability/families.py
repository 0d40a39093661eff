"""Bounded names for a call: its route family and its GenAI operation.

Metrics labels and span names must not grow with the paths clients send, so an
upstream path is reduced to one of a fixed set of families. The version segment
(``v1``, ``v2``, ``v1beta``) and any path prefix of the provider's base URL before it are
skipped. Providers name the same kinds of call differently (``/v1/messages``,
``/v1beta/models/M:generateContent``): they map to the same families.
"""

from __future__ import annotations

import re

ROUTE_FAMILIES = (
    "chat",
    "fim",
    "agents",
    "conversations",
    "embeddings",
    "classifiers",
    "ocr",
    "audio",
    "files",
    "batch",
    "models",
    "fine_tuning",
    "libraries",
    "images",
    "rerank",
    "other",
)

_FIRST_SEGMENT = {
    "chat": "chat",
    "fim": "fim",
    "agents": "agents",
    "conversations": "conversations",
    "embeddings": "embeddings",
    "moderations": "classifiers",
    "classifications": "classifiers",
    "ocr": "ocr",
    "audio": "audio",
    "files": "files",
    "batch": "batch",
    "models": "models",
    "fine_tuning": "fine_tuning",
    "libraries": "libraries",
    # other providers' names for the same kinds of call
    "messages": "chat",
    "responses": "chat",
    "completions": "chat",
    "interactions": "chat",
    "images": "images",
    "rerank": "rerank",
    "embed": "embeddings",
}
# a model's method in the path (models/M:generateContent) -> its family
_METHODS = {
    "generateContent": "chat",
    "streamGenerateContent": "chat",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
}

# /v1/chat/moderations and /v1/chat/classifications classify; they are not chat.
_CHAT_CLASSIFIERS = frozenset(("moderations", "classifications"))

# GenAI semantic-convention operation names; custom values where the spec has none.
_OPERATIONS = {
    ("chat", "completions"): "chat",
    ("fim", "completions"): "text_completion",
    ("agents", "completions"): "invoke_agent",
    ("embeddings", ""): "embeddings",
    ("ocr", ""): "ocr",
    ("audio", "transcriptions"): "transcription",
    ("audio", "speech"): "speech",
    ("moderations", ""): "classification",
    ("classifications", ""): "classification",
    ("chat", "moderations"): "classification",
    ("chat", "classifications"): "classification",
    ("messages", ""): "chat",
    ("responses", ""): "chat",
    ("completions", ""): "text_completion",
    ("embed", ""): "embeddings",
    ("rerank", ""): "rerank",
    ("images", "generations"): "image_generation",
}
# a model's method in the path -> its operation
_METHOD_OPERATIONS = {
    "generateContent": "chat",
    "streamGenerateContent": "chat",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
}


_VERSION = re.compile(r"v\d+(?:(?:alpha|beta)\d*)?")


def _segments(upstream_path: str) -> list[str]:
    parts = [p for p in upstream_path.split("?", 1)[0].split("/") if p]
    for index, part in enumerate(parts):
        if part[0] == "v" and _VERSION.fullmatch(part):
            return parts[index + 1 :]
    return parts


def route_family(upstream_path: str) -> str:
    """One of ``ROUTE_FAMILIES`` for an upstream path such as ``/v1/chat/completions``."""
    parts = _segments(upstream_path)
    if not parts:
        return "other"
    if parts[0] == "chat" and len(parts) > 1 and parts[1] in _CHAT_CLASSIFIERS:
        return "classifiers"
    if parts[0] == "models" and len(parts) > 1:
        method = parts[-1].replace("%3A", ":").replace("%3a", ":").rpartition(":")[2]
        if method in _METHODS:
            return _METHODS[method]
    return _FIRST_SEGMENT.get(parts[0], "other")


def operation_name(method: str, upstream_path: str) -> str | None:
    """The ``gen_ai.operation.name`` of a call, or None when it is not a model call."""
    if method != "POST":
        return None
    parts = _segments(upstream_path)
    if not parts:
        return None
    if parts[0] == "conversations":
        # Starting, appending to or restarting a conversation runs the model; other
        # POSTs under /conversations do not exist today, and GETs are excluded above.
        return "invoke_agent"
    if parts[0] == "models" and len(parts) > 1:
        method = parts[-1].replace("%3A", ":").replace("%3a", ":").rpartition(":")[2]
        return _METHOD_OPERATIONS.get(method)
    second = parts[1] if len(parts) > 1 else ""
    return _OPERATIONS.get((parts[0], second))
