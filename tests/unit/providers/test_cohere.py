"""The Cohere provider: which routes are metered, billed units read from answers and streams,
and its price catalog."""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
import pytest

from passgate.accounting.pricing import parse_catalog
from passgate.exchange import Metered, RequestInfo, Usage
from passgate.providers.cohere import CHAT, EMBED, PARSE, RERANK, CohereSpec, billed_usage
from passgate.providers.registry import BUILTIN, enabled, spec_named
from passgate.settings_env import load_settings

SPEC = CohereSpec()

INFO = RequestInfo()
CHAT_METERED = Metered(CHAT)

# Shapes as Cohere sends them (docs.cohere.com API reference; cohere SDK types).
V2_CHAT = {
    "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
    "finish_reason": "COMPLETE",
    "message": {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "The user greets me."},
            {"type": "text", "text": "Hello!"},
        ],
    },
    "usage": {
        "billed_units": {"input_tokens": 50, "output_tokens": 26},
        "tokens": {"input_tokens": 793, "output_tokens": 61},
        "cached_tokens": 12,
    },
}
V1_CHAT = {
    "response_id": "d235db17-8555-493b-8d91-e601f76de3f9",
    "text": "Isaac Newton was born in 1643.",
    "generation_id": "eb889b0f-c27d-45ea-98cf-567bdb7fc8bf",
    "chat_history": [],
    "finish_reason": "COMPLETE",
    "meta": {
        "api_version": {"version": "1"},
        "billed_units": {"input_tokens": 14, "output_tokens": 9},
        "tokens": {"input_tokens": 80, "output_tokens": 9},
    },
}
EMBED_V2 = {
    "id": "da6e531f-54c6-4a73-bf92-f60566d8d753",
    "embeddings": {"float": [[0.1, 0.2]]},
    "texts": ["hello"],
    "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2}},
    "response_type": "embeddings_by_type",
}
RERANK_V2 = {
    "id": "07734bd2-2473-4f07-94e1-0d9f0e6843cf",
    "results": [{"index": 2, "relevance_score": 0.99}],
    "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
}


def test_registered() -> None:
    assert isinstance(spec_named("cohere"), CohereSpec)
    assert BUILTIN[0].name == "mistral"


@pytest.mark.parametrize("key_env", ["COHERE_API_KEY", "CO_API_KEY"])
def test_enabled_by_its_environment(monkeypatch: pytest.MonkeyPatch, key_env: str) -> None:
    for name in ("COHERE_API_BASE", "COHERE_API_KEY", "CO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert "cohere" not in [p.name for p in enabled(load_settings().upstreams())]
    monkeypatch.setenv(key_env, "co-real")
    (provider,) = [p for p in enabled(load_settings().upstreams()) if p.name == "cohere"]
    assert provider.origin == "https://api.cohere.com"
    assert provider.credential == ("Authorization", "Bearer co-real")
    # a base URL ending in the API version, as Cohere's docs write it, loses it
    monkeypatch.setenv("COHERE_API_BASE", "http://127.0.0.1:9/cohere/v1/")
    (provider,) = [p for p in enabled(load_settings().upstreams()) if p.name == "cohere"]
    assert (provider.origin, provider.upstream_path(b"/rerank")) == (
        "http://127.0.0.1:9",
        b"/cohere/v1/rerank",
    )
    assert provider.upstream_path(b"/v2/chat") == b"/cohere/v2/chat"


def test_identity_and_credential() -> None:
    assert SPEC.name == "cohere"
    assert SPEC.prefix == b"/cohere"
    assert SPEC.gen_ai_system == "cohere"
    assert SPEC.default_base == "https://api.cohere.com"
    assert SPEC.base_env == ("COHERE_API_BASE",)
    assert SPEC.key_env[0] == "COHERE_API_KEY"
    assert SPEC.credential("co-real") == ("Authorization", "Bearer co-real")
    assert SPEC.caller_key_query is None
    assert SPEC.correlation_headers == (b"x-debug-trace-id",)
    assert b"meta" in SPEC.usage_keys
    assert b"usage" in SPEC.usage_keys


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/chat", CHAT),
        ("/v2/chat", CHAT),
        ("/v2/chat/", CHAT),
        ("/v1/embed", EMBED),
        ("/v2/embed", EMBED),
        ("/v1/rerank", RERANK),
        ("/v2/rerank", RERANK),
        ("/v2/parse", PARSE),
    ],
)
def test_metered_routes(path: str, kind: str) -> None:
    metered = SPEC.metered("POST", path, INFO)
    assert metered is not None
    assert metered.kind == kind
    assert metered.discount == 1.0
    assert not metered.free
    assert metered.fixed is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/models/command-a-03-2025"),
        ("GET", "/v2/chat"),
        ("POST", "/v1/tokenize"),
        ("POST", "/v1/detokenize"),
        ("POST", "/v1/check-api-key"),
        ("POST", "/v2/batches"),
        ("GET", "/v2/batches/b-1"),
        ("POST", "/v2/batches/b-1:cancel"),
        ("POST", "/v1/embed-jobs"),
        ("POST", "/v2/audio/transcriptions"),
        ("POST", "/v1/datasets"),
        ("POST", "/v1/chatty"),
        ("POST", "/v3/chat"),
    ],
)
def test_unmetered_routes(method: str, path: str) -> None:
    assert SPEC.metered(method, path, INFO) is None


def test_model_never_comes_from_a_path() -> None:
    assert SPEC.model_from_path("/v1/models/command-a-03-2025") is None
    assert SPEC.model_from_path("/v2/chat") is None


def test_v2_chat_bills_billed_units_not_tokens() -> None:
    usage = SPEC.usage(V2_CHAT, CHAT_METERED, INFO)
    # thinking output is inside output_tokens; Cohere reports no separate reasoning count
    assert usage == Usage(prompt_tokens=50, completion_tokens=26, cached_tokens=12)
    assert usage.reasoning_tokens is None
    assert usage.total_tokens is None


def test_v1_chat_reads_meta() -> None:
    usage = SPEC.usage(V1_CHAT, CHAT_METERED, INFO)
    assert usage == Usage(prompt_tokens=14, completion_tokens=9)


def test_cached_tokens_are_capped_at_the_billed_input() -> None:
    # Cohere counts cache hits over every prompt token, billed or not
    body = {
        "usage": {"billed_units": {"input_tokens": 50, "output_tokens": 1}, "cached_tokens": 176}
    }
    usage = SPEC.usage(body, CHAT_METERED, INFO)
    assert usage is not None
    assert usage.prompt_tokens == 50
    assert usage.cached_tokens == 50


def test_v1_meta_cached_tokens() -> None:
    body = {
        "meta": {"billed_units": {"input_tokens": 100, "output_tokens": 5}, "cached_tokens": 64}
    }
    assert SPEC.usage(body, CHAT_METERED, INFO) == Usage(
        prompt_tokens=100, completion_tokens=5, cached_tokens=64
    )


def test_embed_and_rerank() -> None:
    assert SPEC.usage(EMBED_V2, Metered(EMBED), INFO) == Usage(prompt_tokens=2)
    assert SPEC.usage(RERANK_V2, Metered(RERANK), INFO) == Usage(search_units=1)


def test_embed_images_reported_as_text_and_image_tokens() -> None:
    body = {"meta": {"billed_units": {"text_tokens": 7, "image_tokens": 1000, "images": 1}}}
    assert SPEC.usage(body, Metered(EMBED), INFO) == Usage(prompt_tokens=1007)


def test_parse_pages() -> None:
    body = {"id": "p-1", "pages": [], "meta": {"billed_units": {"pages": 3}}}
    assert SPEC.usage(body, Metered(PARSE), INFO) == Usage(pages=3)


def test_counts_typed_as_numbers() -> None:
    body = {"meta": {"billed_units": {"input_tokens": 12.0, "output_tokens": 3.0}}}
    assert SPEC.usage(body, CHAT_METERED, INFO) == Usage(prompt_tokens=12, completion_tokens=3)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "text",
        {},
        {"usage": None},
        {"usage": []},
        {"usage": {"tokens": {"input_tokens": 5, "output_tokens": 5}}},  # raw tokens only
        {"meta": {"api_version": {"version": "1"}}},
        {"meta": {"billed_units": "many"}},
        {"meta": {"billed_units": {"input_tokens": -1}}},
        {"meta": {"billed_units": {"input_tokens": True}}},
        {"meta": {"billed_units": {"input_tokens": "12"}}},
        {"meta": {"billed_units": {"input_tokens": float("inf")}}},
        {"meta": {"billed_units": {"input_tokens": 2**40}}},
        {"meta": {"billed_units": {"classifications": 2}}},
    ],
)
def test_malformed_or_absent_usage_is_none(body: Any) -> None:
    assert SPEC.usage(body, CHAT_METERED, INFO) is None


def test_cached_without_billed_input_is_dropped() -> None:
    body = {"meta": {"billed_units": {"search_units": 1}, "cached_tokens": 9}}
    assert billed_usage(body["meta"]) == Usage(search_units=1)


def test_v2_stream_message_end() -> None:
    events = [
        {
            "id": "5c1f",
            "type": "message-start",
            "delta": {"message": {"role": "assistant", "content": [], "tool_plan": ""}},
        },
        {"type": "content-start", "index": 0, "delta": {"message": {"content": {"text": ""}}}},
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hi"}}}},
        {"type": "content-end", "index": 0},
        {
            "type": "message-end",
            "delta": {
                "finish_reason": "COMPLETE",
                "usage": {
                    "billed_units": {"input_tokens": 3, "output_tokens": 9},
                    "tokens": {"input_tokens": 69, "output_tokens": 9},
                    "cached_tokens": 2,
                },
            },
        },
    ]
    usage: Usage | None = None
    seen: list[Usage | None] = []
    for event in events:
        usage = SPEC.stream_usage(event, usage, CHAT_METERED)
        seen.append(usage)
    assert seen[:4] == [None] * 4
    assert usage == Usage(prompt_tokens=3, completion_tokens=9, cached_tokens=2)


def test_v1_stream_end_line() -> None:
    lines = [
        b'{"is_finished":false,"event_type":"stream-start","generation_id":"g-1"}',
        b'{"is_finished":false,"event_type":"text-generation","text":"Hi"}',
        b'{"is_finished":true,"event_type":"stream-end","response":{"response_id":"r-1",'
        b'"text":"Hi","generation_id":"g-1","chat_history":[],"finish_reason":"COMPLETE",'
        b'"meta":{"api_version":{"version":"1"},"billed_units":{"input_tokens":9,'
        b'"output_tokens":20},"tokens":{"input_tokens":17,"output_tokens":20}}},'
        b'"finish_reason":"COMPLETE"}',
    ]
    usage: Usage | None = None
    for line in lines:
        usage = SPEC.stream_usage(orjson.loads(line), usage, CHAT_METERED)
    assert usage == Usage(prompt_tokens=9, completion_tokens=20)


@pytest.mark.parametrize(
    "event",
    [
        None,
        "[DONE]",
        [],
        {"type": "message-end"},
        {"type": "message-end", "delta": "x"},
        {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "boom"}},
        {"event_type": "stream-end", "response": None},
        {"event_type": "stream-end", "response": {"text": "no meta"}},
        {"event_type": "text-generation", "text": "x"},
    ],
)
def test_stream_events_without_usage_keep_what_was_known(event: Any) -> None:
    known = Usage(prompt_tokens=1, completion_tokens=2)
    assert SPEC.stream_usage(event, known, CHAT_METERED) is known
    assert SPEC.stream_usage(event, None, CHAT_METERED) is None


def test_response_model() -> None:
    assert SPEC.response_model(V2_CHAT) is None  # Cohere's answers name no model
    assert SPEC.response_model({"model": "command-a-03-2025"}) == "command-a-03-2025"
    assert SPEC.response_model({"model": ""}) is None
    assert SPEC.response_model({"model": 3}) is None
    assert SPEC.response_model([]) is None


def _catalog_document() -> Any:
    raw = resources.files("passgate.providers").joinpath("prices", SPEC.prices_file).read_bytes()
    return orjson.loads(raw)


def test_prices_file_loads_with_sources_and_dates() -> None:
    document = _catalog_document()
    catalog = parse_catalog(document)
    assert document["currency"] == "USD"
    for name, fields in document["models"].items():
        assert fields["source"].startswith("https://"), name
        assert fields["date"] == "2026-12-07", name
        price = catalog.lookup(name)
        assert price is not None
        assert not price.free, name


def test_prices_of_billed_units() -> None:
    catalog = parse_catalog(_catalog_document())
    command_a = catalog.lookup("command-a-03-2025")
    assert command_a is not None
    # 50 billed input (12 of them cached, at the input rate: no cache rate) and 26 output
    cost = command_a.cost(Usage(prompt_tokens=50, completion_tokens=26, cached_tokens=12))
    assert cost == pytest.approx(50 * 2.5e-6 + 26 * 1e-5)
    rerank = catalog.lookup("rerank-v3.5")
    assert rerank is not None
    assert rerank.cost(Usage(search_units=3)) == pytest.approx(3 * 0.002)
    embed = catalog.lookup("embed-v4.0")
    assert embed is not None
    assert embed.cost(Usage(prompt_tokens=1000)) == pytest.approx(1000 * 1.2e-7)
    parse = catalog.lookup("parse-v5.0")
    assert parse is not None
    assert parse.cost(Usage(pages=2)) == pytest.approx(2 * 0.0015)
