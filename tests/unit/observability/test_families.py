"""Route families and GenAI operation names stay bounded whatever the path."""

from __future__ import annotations

import pytest

from passgate.observability.families import ROUTE_FAMILIES, operation_name, route_family


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/v1/chat/completions", "chat"),
        ("/v1/fim/completions", "fim"),
        ("/v1/agents/completions", "agents"),
        ("/v1/agents/ag_123/versions", "agents"),
        ("/v1/conversations/conv_1/restart", "conversations"),
        ("/v1/embeddings", "embeddings"),
        ("/v1/moderations", "classifiers"),
        ("/v1/chat/moderations", "classifiers"),
        ("/v1/chat/classifications", "classifiers"),
        ("/v1/ocr", "ocr"),
        ("/v1/audio/transcriptions", "audio"),
        ("/v2/audio/speech", "audio"),
        ("/v1/files/abc/content", "files"),
        ("/v1/batch/jobs", "batch"),
        ("/v1/models", "models"),
        ("/v1/fine_tuning/jobs", "fine_tuning"),
        ("/v1/libraries/l1/documents", "libraries"),
        ("/v2/prompts", "other"),
        ("/v1/workflows/x/y", "other"),
        ("/some/prefix/v1/chat/completions", "chat"),
        ("/v1/chat/completions?x=1", "chat"),
        ("", "other"),
        ("/v1", "other"),
    ],
)
def test_route_family(path: str, family: str) -> None:
    assert route_family(path) == family
    assert family in ROUTE_FAMILIES


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/v1/chat/completions", "chat"),
        ("POST", "/v1/fim/completions", "text_completion"),
        ("POST", "/v1/agents/completions", "invoke_agent"),
        ("POST", "/v1/conversations", "invoke_agent"),
        ("POST", "/v1/conversations/conv_1/restart", "invoke_agent"),
        ("POST", "/v1/embeddings", "embeddings"),
        ("POST", "/v1/ocr", "ocr"),
        ("POST", "/v1/audio/transcriptions", "transcription"),
        ("POST", "/v1/audio/speech", "speech"),
        ("POST", "/v1/moderations", "classification"),
        ("POST", "/v1/chat/moderations", "classification"),
        ("POST", "/base/v1/chat/completions", "chat"),
        ("GET", "/v1/conversations", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/files", None),
        ("POST", "/v1/agents", None),
        ("POST", "", None),
    ],
)
def test_operation_name(method: str, path: str, operation: str | None) -> None:
    assert operation_name(method, path) == operation


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/v1/messages", "chat"),
        ("/v1/responses", "chat"),
        ("/v1beta/models/gemini-2.5-flash:generateContent", "chat"),
        ("/v1beta/models/gemini-2.5-flash%3AstreamGenerateContent", "chat"),
        ("/v1beta/models/text-embedding-004:embedContent", "embeddings"),
        ("/v1beta/models/gemini-2.5-flash:countTokens", "models"),
        ("/v1beta/models", "models"),
        ("/v2/rerank", "rerank"),
        ("/v2/embed", "embeddings"),
        ("/v1/images/generations", "images"),
    ],
)
def test_other_providers_paths_map_to_the_same_families(path: str, family: str) -> None:
    assert route_family(path) == family


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/v1/messages", "chat"),
        ("/v1beta/models/gemini-2.5-flash:generateContent", "chat"),
        ("/v1beta/models/text-embedding-004:embedContent", "embeddings"),
        ("/v1beta/models/gemini-2.5-flash:countTokens", None),
        ("/v2/rerank", "rerank"),
    ],
)
def test_other_providers_model_calls_have_an_operation(path: str, operation: str | None) -> None:
    assert operation_name("POST", path) == operation
