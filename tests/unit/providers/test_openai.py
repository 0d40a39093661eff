"""The OpenAI provider's pure functions, on payloads shaped as OpenAI's API reference shows
them, and its price catalog."""

from __future__ import annotations

from typing import Any

import pytest

from passgate.accounting.pricing import load_catalog
from passgate.exchange import Metered, RequestInfo, Usage
from passgate.providers.openai import (
    FREE,
    IMAGE,
    SPEECH,
    TOKENS,
    TOKENS_FLEX,
    TRANSCRIPTION,
    VIDEO,
    OpenAISpec,
)
from passgate.providers.openai_compatible import VllmSpec, compatible_spec
from passgate.providers.registry import BUILTIN, spec_named
from tests.support import fake_openai_payloads as payloads

SPEC = OpenAISpec()
INFO = RequestInfo()


def metered(path: str, method: str = "POST", **info: Any) -> Metered | None:
    return SPEC.metered(method, path, RequestInfo(**info))


def stream(events: list[Any], kind: Metered = TOKENS) -> Usage | None:
    so_far: Usage | None = None
    for event in events:
        so_far = SPEC.stream_usage(event, so_far, kind)
    return so_far


CHAT = Usage(
    prompt_tokens=23, completion_tokens=41, cached_tokens=7, total_tokens=64, reasoning_tokens=13
)
RESPONSE = Usage(
    prompt_tokens=31, completion_tokens=52, cached_tokens=11, total_tokens=83, reasoning_tokens=20
)


def test_the_spec_is_registered_with_openai_settings() -> None:
    assert spec_named("openai") is not None
    assert BUILTIN[0].name == "mistral"
    assert SPEC.prefix == b"/openai"
    assert SPEC.default_base == "https://api.openai.com"
    assert SPEC.base_env == ("OPENAI_API_BASE",)
    assert SPEC.key_env == ("OPENAI_API_KEY",)
    assert SPEC.gen_ai_system == "openai"
    assert SPEC.credential("sk-x") == ("Authorization", "Bearer sk-x")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/chat/completions", TOKENS),
        ("/v1/chat/completions/", TOKENS),
        ("/v1/completions", TOKENS),
        ("/v1/responses", TOKENS),
        ("/v1/embeddings", TOKENS),
        ("/v1/audio/transcriptions", TRANSCRIPTION),
        ("/v1/audio/translations", TRANSCRIPTION),
        ("/v1/images/generations", IMAGE),
        ("/v1/images/edits", IMAGE),
        ("/v1/moderations", FREE),
        ("/v1/videos", VIDEO),
        ("/v1/videos/video_1/remix", VIDEO),
        ("/v1/responses/input_tokens", FREE),
        ("/v1/batches", None),
        ("/v1/files", None),
        ("/v1/assistants", None),
        ("/v1/threads/thread_1/runs", None),
        ("/v1/fine_tuning/jobs", None),
    ],
)
def test_which_routes_are_metered(path: str, expected: Metered | None) -> None:
    assert metered(path) == expected


def test_reading_routes_are_never_metered() -> None:
    assert metered("/v1/responses/resp_1", "GET") is None
    assert metered("/v1/chat/completions", "GET") is None
    assert metered("/v1/models", "GET") is None


def test_moderations_are_free() -> None:
    assert FREE.free


def test_a_flex_request_costs_half() -> None:
    found = metered("/v1/chat/completions", body={"service_tier": "flex"})
    assert found == TOKENS_FLEX and found.discount == 0.5
    assert metered("/v1/responses", body={"service_tier": "priority"}) == TOKENS


def test_tts_1_speech_is_priced_by_the_characters_of_its_input() -> None:
    found = metered("/v1/audio/speech", model="tts-1-hd", input_chars=42)
    assert found is not None and found.fixed == Usage(characters=42)


def test_token_billed_speech_is_read_from_the_answer() -> None:
    assert metered("/v1/audio/speech", model="gpt-4o-mini-tts", input_chars=42) == SPEECH
    assert metered("/v1/audio/speech", model="tts-1") == SPEECH  # input unknown: never a guess


def test_chat_usage_with_cached_and_reasoning_tokens() -> None:
    body = payloads.chat_completion("gpt-4o", "c1")
    assert SPEC.usage(body, TOKENS, INFO) == CHAT
    assert SPEC.response_model(body) == "gpt-4o"


def test_plain_three_count_usage() -> None:
    body = {"usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    assert SPEC.usage(body, TOKENS, INFO) == Usage(5, 2, None, 7)


def test_responses_api_usage() -> None:
    assert SPEC.usage(payloads.response("gpt-5", "r1"), TOKENS, INFO) == RESPONSE


def test_embeddings_usage() -> None:
    found = SPEC.usage(payloads.embeddings("text-embedding-3-small", 2), TOKENS, INFO)
    assert found == Usage(prompt_tokens=8, total_tokens=8)


def test_a_chat_stream_with_include_usage_reports_its_last_chunk() -> None:
    chunks = payloads.chat_chunks("gpt-4o", "c1", 5, include_usage=True)
    assert chunks[0]["usage"] is None
    assert stream(chunks) == CHAT


def test_a_chat_stream_without_include_usage_reports_nothing() -> None:
    assert stream(payloads.chat_chunks("gpt-4o", "c1", 5, include_usage=False)) is None


def test_a_response_stream_reports_response_completed() -> None:
    events = [data for _, data in payloads.response_events("gpt-5", "r1", 3)]
    assert stream(events) == RESPONSE
    assert SPEC.response_model(events[0]) == "gpt-5"  # nested in response.created
    # response.created carries "usage": null, which must not erase anything known
    assert SPEC.stream_usage(events[0], CHAT, TOKENS) is CHAT


def test_an_incomplete_response_still_reports_its_usage() -> None:
    event = {"type": "response.incomplete", "response": payloads.response("gpt-5", "r1")}
    assert SPEC.stream_usage(event, None, TOKENS) == RESPONSE


def test_transcription_tokens_seconds_and_verbose_duration() -> None:
    tokens = SPEC.usage(payloads.transcription("gpt-4o-transcribe", "json"), TRANSCRIPTION, INFO)
    assert tokens == Usage(prompt_tokens=120, completion_tokens=30, total_tokens=150)
    seconds = SPEC.usage(payloads.transcription("whisper-1", "json"), TRANSCRIPTION, INFO)
    assert seconds == Usage(audio_seconds=42.0)
    verbose = SPEC.usage(payloads.transcription("whisper-1", "verbose_json"), TRANSCRIPTION, INFO)
    assert verbose == Usage(audio_seconds=12.5)
    assert SPEC.usage({"text": "hi"}, TRANSCRIPTION, INFO) is None


def test_a_transcription_stream_reports_its_done_event() -> None:
    events = [data for _, data in payloads.transcription_events()]
    assert stream(events, TRANSCRIPTION) == Usage(
        prompt_tokens=120, completion_tokens=30, total_tokens=150
    )


def test_a_speech_stream_reports_its_done_event() -> None:
    events = [data for _, data in payloads.speech_events()]
    expected = Usage(prompt_tokens=14, completion_tokens=101, total_tokens=115)
    assert stream(events, SPEECH) == expected


def test_image_usage_counts_images_and_tokens() -> None:
    found = SPEC.usage(payloads.images("gpt-image-1", 2), IMAGE, INFO)
    assert found == Usage(prompt_tokens=50, completion_tokens=4160, total_tokens=4210, images=2)
    assert SPEC.usage(payloads.images("other", 3), IMAGE, INFO) == Usage(images=3)


def test_an_image_stream_counts_each_completed_image() -> None:
    found = stream([data for _, data in payloads.image_events(2)], IMAGE)
    assert found is not None and found.images == 2 and found.completion_tokens == 4160


def test_a_video_reports_no_usage() -> None:
    video = {"id": "video_1", "object": "video", "model": "sora-2", "seconds": "8"}
    assert SPEC.usage(video, VIDEO, INFO) is None


def test_moderation_reports_no_usage() -> None:
    assert SPEC.usage(payloads.moderation("omni-moderation-latest", "m1"), FREE, INFO) is None


MALFORMED: list[Any] = [
    None,
    [],
    "usage",
    7,
    {},
    {"usage": None},
    {"usage": "many"},
    {"usage": {"prompt_tokens": -1, "completion_tokens": "2"}},
    {"usage": {"prompt_tokens": 2**40, "total_tokens": float("inf")}},
    {"usage": {"type": "duration", "seconds": "forty"}},
    {"usage": {"prompt_tokens_details": {"cached_tokens": True}}},
    {"type": "response.completed", "response": "done"},
    {"type": "response.completed", "response": {"usage": [1, 2]}},
    {"type": "image_generation.completed", "usage": 5},
    {"type": ["response.completed"], "usage": {}},
    {"type": {"a": 1}, "response": {}},
    {"data": "not-a-list", "duration": -3},
    {"model": 5, "response": {"model": None}},
]


@pytest.mark.parametrize("obj", MALFORMED)
@pytest.mark.parametrize("kind", [TOKENS, TRANSCRIPTION, SPEECH, IMAGE, FREE])
def test_malformed_input_never_raises(obj: Any, kind: Metered) -> None:
    found = SPEC.usage(obj, kind, INFO)
    assert found is None or isinstance(found, Usage)
    streamed = SPEC.stream_usage(obj, None, kind)
    assert streamed is None or isinstance(streamed, Usage)
    assert SPEC.response_model(obj) is None or isinstance(SPEC.response_model(obj), str)


def test_the_catalog_loads_and_prices_cached_tokens() -> None:
    catalog = load_catalog(spec=SPEC)
    price = catalog.lookup("gpt-4o")
    assert price is not None
    assert price.input_per_token == 2.5e-06 and price.cached_input_per_token == 1.25e-06
    assert price.source.startswith("https://") and price.date == "2026-12-07"
    assert catalog.lookup("gpt-4o-2024-08-06") == price  # a dated snapshot is an alias
    assert price.cost(CHAT) == pytest.approx(16 * 2.5e-06 + 7 * 1.25e-06 + 41 * 1e-05)


def test_the_catalog_prices_audio_images_and_speech() -> None:
    catalog = load_catalog(spec=SPEC)
    whisper, tts, image = catalog.lookup("whisper-1"), catalog.lookup("tts-1"), None
    image = catalog.lookup("gpt-image-1")
    assert whisper is not None and whisper.per_audio_second == 0.0001
    assert tts is not None and tts.per_character == 1.5e-05
    assert image is not None and image.output_per_token == 4e-05
    moderation = catalog.lookup("omni-moderation-latest")
    assert moderation is not None and moderation.free


def test_vllm_and_named_servers_share_the_usage_functions() -> None:
    vllm = VllmSpec()
    assert spec_named("vllm") is not None
    assert vllm.base_env == ("HOSTED_VLLM_API_BASE",)
    assert vllm.key_env == ("HOSTED_VLLM_API_KEY",)
    assert vllm.metered("POST", "/v1/chat/completions", INFO) == TOKENS
    assert vllm.usage(payloads.chat_completion("m", "c"), TOKENS, INFO) == CHAT
    assert load_catalog(spec=vllm).models() == []
    ollama = compatible_spec("ollama", "/ollama", "http://127.0.0.1:11434", "X-Api-Key")
    assert (ollama.name, ollama.prefix) == ("ollama", b"/ollama")
    assert ollama.credential("k") == ("X-Api-Key", "k")
    assert compatible_spec("tgi", "/tgi", "http://h").credential("k") == (
        "Authorization",
        "Bearer k",
    )
