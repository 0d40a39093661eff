"""The Gemini provider's pure functions, on payloads shaped as Google sends them."""

from importlib import resources
from typing import Any

import orjson
import pytest

from passgate.accounting.pricing import load_catalog
from passgate.exchange import RequestInfo, Usage
from passgate.providers.base import Metered
from passgate.providers.gemini import GeminiSpec, usage_from_metadata

GEMINI = GeminiSpec()
INFO = RequestInfo()
TOKENS = Metered(kind="tokens")

# a thinking model's answer that read part of its prompt from a context cache
CACHED_THINKING = {
    "candidates": [
        {"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "STOP"}
    ],
    "usageMetadata": {
        "promptTokenCount": 2048,
        "cachedContentTokenCount": 1536,
        "candidatesTokenCount": 37,
        "thoughtsTokenCount": 411,
        "totalTokenCount": 2496,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2048}],
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1536}],
    },
    "modelVersion": "gemini-3.5-flash",
    "responseId": "mBg1aLKxBaa5nvgP3YnA8Q0",
}


def _event(candidates: int | None, thoughts: int | None = None, **extra: Any) -> Any:
    usage: dict[str, Any] = {"promptTokenCount": 10, **extra}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
    if thoughts is not None:
        usage["thoughtsTokenCount"] = thoughts
    usage["totalTokenCount"] = 10 + (candidates or 0) + (thoughts or 0)
    return {
        "candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}}],
        "usageMetadata": usage,
        "modelVersion": "gemini-3.1-pro-preview",
    }


def test_media_uploads_keep_their_path_and_other_paths_get_a_version() -> None:
    assert GEMINI.api_path(b"/upload/v1beta/files") == b"/upload/v1beta/files"
    assert GEMINI.api_path(b"/models/m:generateContent") == b"/v1beta/models/m:generateContent"
    assert GEMINI.api_path(b"/v1/models") == b"/v1/models"
    assert GEMINI.api_path(b"/v1alpha/models") == b"/v1alpha/models"
    assert GEMINI.api_path(b"/uploads") == b"/v1beta/uploads"


def test_identity_of_the_provider() -> None:
    assert GEMINI.name == "gemini"
    assert GEMINI.prefix == b"/gemini"
    assert GEMINI.gen_ai_system == "gcp.gemini"
    assert GEMINI.default_base == "https://generativelanguage.googleapis.com"
    assert GEMINI.base_env == ("GEMINI_API_BASE",)
    assert GEMINI.key_env == ("GEMINI_API_KEY",)
    assert GEMINI.default_version == b"v1beta"
    assert GEMINI.caller_key_headers == (b"x-goog-api-key",)
    assert GEMINI.caller_key_query == b"key"
    assert GEMINI.usage_keys == (b"usageMetadata", b"usage")
    assert GEMINI.model_keys == (b"modelVersion", b"model")
    assert GEMINI.correlation_headers == ()
    assert GEMINI.credential("real-key") == ("x-goog-api-key", "real-key")


@pytest.mark.parametrize(
    ("path", "kind", "free"),
    [
        ("/v1beta/models/gemini-3.5-flash:generateContent", "tokens", False),
        ("/v1beta/models/gemini-3.5-flash:streamGenerateContent", "tokens", False),
        ("/v1/models/gemini-3.5-flash:generateContent", "tokens", False),
        ("/v1alpha/models/gemini-3.5-flash:generateContent", "tokens", False),
        ("/v1beta/models/gemini-embedding-001:embedContent", "embed", False),
        ("/v1beta/models/gemini-embedding-001:batchEmbedContents", "embed", False),
        ("/v1beta/models/gemini-3.5-flash:countTokens", "tokens", True),
        ("/v1beta/tunedModels/my-model-7:generateContent", "tokens", False),
        ("/v1beta/interactions", "interactions", False),
        # a percent-encoded ":" is what Google decodes: still metered
        ("/v1beta/models/gemini-3.5-flash%3AgenerateContent", "tokens", False),
    ],
)
def test_metered_routes(path: str, kind: str, free: bool) -> None:
    metered = GEMINI.metered("POST", path, INFO)
    assert metered is not None
    assert (metered.kind, metered.free, metered.discount, metered.fixed) == (kind, free, 1.0, None)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1beta/models"),
        ("GET", "/v1beta/models/gemini-3.5-flash"),
        ("GET", "/v1beta/models/gemini-3.5-flash:generateContent"),
        ("POST", "/v1beta/models/gemini-3.5-flash:batchGenerateContent"),
        ("POST", "/v1beta/models/gemini-embedding-001:asyncBatchEmbedContent"),
        ("POST", "/v1beta/cachedContents"),
        ("GET", "/v1beta/interactions/v1_abc"),
        ("POST", "/v1beta/interactions/v1_abc/cancel"),
        ("POST", "/upload/v1beta/files"),
        ("GET", "/v1beta/files/abc"),
        ("POST", "/v1beta/models/imagen-4.0-generate-001:predict"),
        ("POST", "/v1beta/models/gemini-3.5-flash:generateContent/extra"),
        ("POST", "/models/gemini-3.5-flash:generateContent"),
        ("POST", ""),
    ],
)
def test_free_routes_are_not_metered(method: str, path: str) -> None:
    assert GEMINI.metered(method, path, INFO) is None


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1beta/models/gemini-3.5-flash:generateContent", "gemini-3.5-flash"),
        ("/v1/models/gemini-embedding-001:batchEmbedContents", "gemini-embedding-001"),
        ("/v1beta/models/gemini-3.5-flash%3AstreamGenerateContent", "gemini-3.5-flash"),
        ("/v1beta/models/gemini-3.5-flash", "gemini-3.5-flash"),
        ("/v1beta/tunedModels/my-model-7:generateContent", "tunedModels/my-model-7"),
        ("/v1beta/models", None),
        ("/v1beta/files/abc", None),
        ("/v1beta/cachedContents/xyz", None),
        ("/v1beta/models/:generateContent", None),
        ("", None),
    ],
)
def test_model_from_path(path: str, model: str | None) -> None:
    assert GEMINI.model_from_path(path) == model


def test_usage_of_a_cached_thinking_answer() -> None:
    usage = GEMINI.usage(CACHED_THINKING, TOKENS, INFO)
    assert usage == Usage(
        prompt_tokens=2048,  # the cached tokens are part of the prompt, as Google counts them
        completion_tokens=37 + 411,  # thoughts are billed as output
        cached_tokens=1536,
        total_tokens=2496,
        reasoning_tokens=411,
    )


def test_tool_use_prompt_tokens_count_as_input() -> None:
    metadata = {
        "promptTokenCount": 100,
        "toolUsePromptTokenCount": 900,
        "candidatesTokenCount": 50,
        "totalTokenCount": 1050,
    }
    usage = usage_from_metadata(metadata)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 50, 1050)


def test_usage_without_thoughts_or_cache() -> None:
    counts = {"promptTokenCount": 8, "candidatesTokenCount": 3, "totalTokenCount": 11}
    body = {"usageMetadata": counts}
    assert GEMINI.usage(body, TOKENS, INFO) == Usage(8, 3, None, 11)


def test_whole_float_counts_are_read_and_strings_are_not() -> None:
    body = {"usageMetadata": {"promptTokenCount": "12", "candidatesTokenCount": 4.0}}
    assert GEMINI.usage(body, TOKENS, INFO) == Usage(completion_tokens=4)


def test_embedding_usage_is_the_prompt() -> None:
    body = {
        "embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}],
        "usageMetadata": {"promptTokenCount": 14, "totalTokenCount": 14},
    }
    assert GEMINI.usage(body, Metered(kind="embed"), INFO) == Usage(
        prompt_tokens=14, total_tokens=14
    )


def test_no_usage_reported_is_none() -> None:
    # embedContent as Google documented it for long, and countTokens, report no usageMetadata
    assert GEMINI.usage({"embedding": {"values": [0.1]}}, Metered(kind="embed"), INFO) is None
    assert GEMINI.usage({"totalTokens": 31}, Metered(free=True), INFO) is None
    assert GEMINI.usage({"usageMetadata": {}}, TOKENS, INFO) is None


def test_usage_of_a_json_array_stream_is_its_last_report() -> None:
    events = [_event(1), _event(5), {"candidates": []}]
    usage = GEMINI.usage(events, TOKENS, INFO)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 5, 15)
    assert GEMINI.usage([], TOKENS, INFO) is None


def test_stream_usage_keeps_the_latest_counts() -> None:
    so_far = None
    event: Any
    for event in (_event(None), _event(4), {"candidates": []}, _event(9, thoughts=30)):
        so_far = GEMINI.stream_usage(event, so_far, TOKENS)
    assert so_far == Usage(
        prompt_tokens=10, completion_tokens=39, total_tokens=49, reasoning_tokens=30
    )


def test_stream_usage_keeps_counts_a_later_event_leaves_out() -> None:
    first = GEMINI.stream_usage(_event(2, cachedContentTokenCount=6), None, TOKENS)
    later = {"usageMetadata": {"candidatesTokenCount": 7}}
    merged = GEMINI.stream_usage(later, first, TOKENS)
    assert merged is not None
    assert (merged.prompt_tokens, merged.cached_tokens, merged.completion_tokens) == (10, 6, 7)


def test_stream_usage_returns_so_far_for_events_without_usage() -> None:
    so_far = Usage(prompt_tokens=3)
    event: Any
    for event in ({"candidates": []}, None, [], "text", {"usageMetadata": "x"}):
        assert GEMINI.stream_usage(event, so_far, TOKENS) is so_far


INTERACTION = {
    "id": "v1_ChdGb1J",
    "status": "completed",
    "model": "gemini-3.5-flash",
    "outputs": [{"type": "text", "text": "Hi"}],
    "usage": {
        "total_input_tokens": 900,
        "total_cached_tokens": 512,
        "total_output_tokens": 40,
        "total_thought_tokens": 120,
        "total_tool_use_tokens": 100,
        "total_tokens": 1160,
        "input_tokens_by_modality": [{"modality": "text", "tokens": 900}],
    },
}
INTERACT = Metered(kind="interactions")


def test_interaction_usage() -> None:
    assert GEMINI.usage(INTERACTION, INTERACT, INFO) == Usage(
        prompt_tokens=1000,
        completion_tokens=160,
        cached_tokens=512,
        total_tokens=1160,
        reasoning_tokens=120,
    )
    assert GEMINI.response_model(INTERACTION) == "gemini-3.5-flash"
    # the usageMetadata reader does not mistake an interaction for a generateContent answer
    assert GEMINI.usage(INTERACTION, TOKENS, INFO) is None


def test_interaction_stream_usage_comes_with_the_completed_event() -> None:
    events: list[Any] = [
        {"event_type": "interaction.created", "interaction": {"id": "v1_a", "model": "m"}},
        {"event_type": "step.delta", "index": 0, "delta": {"type": "text", "text": "Hi"}},
        {"event_type": "interaction.completed", "interaction": {**INTERACTION, "outputs": []}},
    ]
    so_far = None
    for event in events:
        so_far = GEMINI.stream_usage(event, so_far, INTERACT)
    assert so_far is not None
    assert (so_far.prompt_tokens, so_far.completion_tokens, so_far.cached_tokens) == (
        1000,
        160,
        512,
    )
    assert GEMINI.response_model(events[0]) == "m"


def test_response_model() -> None:
    assert GEMINI.response_model(CACHED_THINKING) == "gemini-3.5-flash"
    assert GEMINI.response_model([_event(1)]) == "gemini-3.1-pro-preview"
    body: Any
    for body in ({}, [], None, {"modelVersion": 3}, {"modelVersion": ""}, "x"):
        assert GEMINI.response_model(body) is None


MALFORMED: list[Any] = [
    None,
    1,
    "usageMetadata",
    [],
    [None, 1],
    {},
    {"usageMetadata": None},
    {"usageMetadata": []},
    {"usageMetadata": {"promptTokenCount": -1}},
    {"usageMetadata": {"promptTokenCount": True, "candidatesTokenCount": "²"}},
    {"usageMetadata": {"promptTokenCount": 2**40, "totalTokenCount": "9" * 400}},
    {"usageMetadata": {"promptTokenCount": float("nan"), "thoughtsTokenCount": float("inf")}},
    {"usageMetadata": {"promptTokenCount": 1.5, "cachedContentTokenCount": {}}},
    {"modelVersion": ["x"]},
    {"usage": {"total_input_tokens": -3, "total_output_tokens": "x"}},
    {"interaction": [], "usage": None},
    {"interaction": {"usage": {"total_tokens": 2**33}, "model": 5}},
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_input_never_raises(body: Any) -> None:
    for metered in (TOKENS, Metered(kind="embed"), Metered(free=True), INTERACT):
        usage = GEMINI.usage(body, metered, INFO)
        assert usage is None or usage.prompt_tokens is None or usage.prompt_tokens >= 0
        GEMINI.stream_usage(body, None, metered)
        GEMINI.stream_usage(body, Usage(prompt_tokens=1), metered)
    GEMINI.response_model(body)


def test_a_bad_count_is_dropped_not_guessed() -> None:
    body = {"usageMetadata": {"promptTokenCount": -5, "candidatesTokenCount": 7}}
    assert GEMINI.usage(body, TOKENS, INFO) == Usage(completion_tokens=7)


def _catalog_document() -> Any:
    raw = resources.files("passgate.providers").joinpath("prices", GEMINI.prices_file).read_bytes()
    return orjson.loads(raw)


def test_the_price_catalog_loads_and_prices_a_cached_thinking_call() -> None:
    document = _catalog_document()
    catalog = load_catalog(spec=GEMINI)
    for name, entry in document["models"].items():
        assert entry["source"].startswith("https://"), name
        assert entry["date"] == "2026-12-07", name
    price = catalog.lookup("gemini-3.5-flash")
    assert price is not None
    usage = GEMINI.usage(CACHED_THINKING, TOKENS, INFO)
    assert usage is not None
    expected = (2048 - 1536) * 1.5e-06 + 1536 * 1.5e-07 + (37 + 411) * 9e-06
    assert price.cost(usage) == pytest.approx(expected, rel=1e-12)


def test_the_catalog_prices_embeddings_and_the_latest_names() -> None:
    catalog = load_catalog(spec=GEMINI)
    embedding = catalog.lookup("gemini-embedding-001")
    assert embedding is not None
    assert embedding.cost(Usage(prompt_tokens=1000, total_tokens=1000)) == pytest.approx(1.5e-04)
    for name in ("gemini-flash-latest", "gemini-flash-lite-latest", "gemini-pro-latest"):
        assert catalog.lookup(name) is not None, name
