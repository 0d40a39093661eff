"""OpenAI at ``/openai``: ``OPENAI_API_BASE`` (default ``https://api.openai.com``), the key from
``OPENAI_API_KEY`` sent as a bearer token.

Metered routes and their usage (the shapes of OpenAI's API reference):

- chat completions, legacy completions, the responses API and embeddings report a ``usage``
  object (``prompt_tokens_details.cached_tokens`` / ``input_tokens_details.cached_tokens`` and
  ``completion_tokens_details.reasoning_tokens`` / ``output_tokens_details.reasoning_tokens``
  included). A streamed chat completion carries usage only in its last chunk, and only when the
  caller set ``stream_options.include_usage``; a streamed response in ``response.completed``
  (``response.incomplete``, ``response.failed``). A request with ``service_tier: "flex"`` is
  billed at half the standard rate.
- transcriptions and translations: ``usage`` of ``type: "tokens"`` (the gpt-4o transcribe models),
  else ``type: "duration"`` seconds (whisper), else the top-level ``duration`` of a
  ``verbose_json`` answer; streamed, the ``transcript.text.done`` event's usage.
- speech: ``tts-1`` models bill the characters of ``input`` (known from the request); the other
  speech models bill tokens, reported only in the ``speech.audio.done`` event of an SSE answer
  (``stream_format: "sse"``). A binary answer of such a model reports nothing.
- images (generations, edits, variations): the images returned (``data``), and the ``usage``
  tokens the gpt-image models report; streamed, each ``*.completed`` event.
- moderations and input-token counting are metered but free.
- video generation is metered, but no answer reports what is billed (seconds of video): its
  calls are recorded with an unknown (null) cost, never as free.

Every other route (files, batches, models, assistants, vector stores, ...) reports no usage and
costs nothing; a batch's usage is in its output file, which the gateway does not price.
"""

from __future__ import annotations

from typing import Any, ClassVar

from passgate.exchange import Metered, RequestInfo, Usage
from passgate.providers.base import ProviderSpec
from passgate.providers.shapes import count, model_named, seconds, token_usage

TOKENS = Metered("tokens")
TOKENS_FLEX = Metered("tokens", discount=0.5)
TRANSCRIPTION = Metered("transcription")
SPEECH = Metered("speech")
IMAGE = Metered("image")
FREE = Metered("free", free=True)
# video generation is billed per second of video, which no answer reports: a call is
# recorded with an unknown cost rather than as free
VIDEO = Metered("video")
_SPEECH_KIND = "speech"

# chat-style routes where ``service_tier: "flex"`` halves the price
_TOKEN_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/responses/compact",
        "/v1/embeddings",
    }
)
_ROUTES = {
    "/v1/audio/transcriptions": TRANSCRIPTION,
    "/v1/audio/translations": TRANSCRIPTION,
    "/v1/images/generations": IMAGE,
    "/v1/images/edits": IMAGE,
    "/v1/images/variations": IMAGE,
    "/v1/moderations": FREE,
    "/v1/responses/input_tokens": FREE,
}
_SPEECH_PATH = "/v1/audio/speech"
_VIDEOS = "/v1/videos"  # create, remix, extend
# speech models billed per character of input (the others per token)
_CHARACTER_SPEECH = ("tts-1",)
# stream events that close a response (each carries the response with its usage)
_RESPONSE_DONE = frozenset({"response.completed", "response.incomplete", "response.failed"})
_IMAGE_DONE = frozenset({"image_generation.completed", "image_edit.completed"})


def transcription_usage(obj: dict[str, Any]) -> Usage | None:
    """A transcription's usage: tokens, else seconds of audio (``usage.seconds`` or a
    ``verbose_json`` answer's ``duration``)."""
    usage = obj.get("usage")
    if isinstance(usage, dict):
        if usage.get("type") == "duration":
            duration = seconds(usage.get("seconds"))
            return None if duration is None else Usage(audio_seconds=duration)
        found = token_usage(usage)
        if found is not None:
            return found
    duration = seconds(obj.get("duration"))
    return None if duration is None else Usage(audio_seconds=duration)


def image_usage(obj: dict[str, Any]) -> Usage | None:
    """An image answer's usage: the images in ``data``, and the tokens of ``usage``."""
    found = token_usage(obj.get("usage"))
    data = obj.get("data")
    if isinstance(data, list):
        found = found or Usage()
        found.images = count(len(data))
    return found


def usage_from(obj: Any, metered: Metered) -> Usage | None:
    """The usage a parsed response body reports, if any."""
    if not isinstance(obj, dict):
        return None
    if metered.kind == "transcription":
        return transcription_usage(obj)
    if metered.kind == "image":
        return image_usage(obj)
    if "usage" in obj:
        return token_usage(obj["usage"])
    return None


def event_usage(obj: Any, so_far: Usage | None, metered: Metered) -> Usage | None:
    """The usage known after one parsed SSE event; ``so_far`` when it says nothing."""
    if not isinstance(obj, dict):
        return so_far
    kind = obj.get("type")
    if not isinstance(kind, str):
        kind = None  # an unhashable "type" must not raise in the set lookups below
    if kind in _RESPONSE_DONE:
        response = obj.get("response")
        found = token_usage(response.get("usage")) if isinstance(response, dict) else None
        return so_far if found is None else found
    if kind in _IMAGE_DONE:
        # one event per image generated
        found = token_usage(obj.get("usage")) or Usage()
        images = 0 if so_far is None else so_far.images or 0
        found.images = images + 1
        return found
    # a chat chunk (usage null until the last one), transcript.text.done, speech.audio.done
    found = token_usage(obj.get("usage"))
    return so_far if found is None else found


def model_from(obj: Any) -> str | None:
    """The model a parsed body or event names: ``model``, or a streamed response's one."""
    return model_named(obj, "response")


def speech_metered(info: RequestInfo) -> Metered:
    """Speech: the characters of ``input`` for the models billed so, else read from the
    answer (tokens, reported only when it is streamed as SSE)."""
    model = info.model or ""
    if info.input_chars is not None and model.startswith(_CHARACTER_SPEECH):
        return Metered(_SPEECH_KIND, fixed=Usage(characters=info.input_chars))
    return SPEECH


def metered_route(api_path: str, info: RequestInfo) -> Metered | None:
    """How a POST to ``api_path`` is metered on an OpenAI-shaped API, or None."""
    path = api_path.rstrip("/")
    if path in _TOKEN_ROUTES:
        body = info.body
        if isinstance(body, dict) and body.get("service_tier") == "flex":
            return TOKENS_FLEX
        return TOKENS
    found = _ROUTES.get(path)
    if found is not None:
        return found
    if path == _SPEECH_PATH:
        return speech_metered(info)
    if path.startswith(_VIDEOS):
        return VIDEO
    return None


class OpenAIShapes(ProviderSpec):
    """The metered routes and usage shapes of OpenAI's API, for OpenAI and for every server
    that answers in its shapes (``openai_compatible``)."""

    def metered(self, method: str, api_path: str, info: RequestInfo) -> Metered | None:
        """Completions, responses, embeddings, audio, images; moderations for free."""
        if method != "POST":
            return None
        return metered_route(api_path, info)

    def usage(self, obj: Any, metered: Metered, info: RequestInfo) -> Usage | None:
        """``usage``; for transcriptions seconds of audio too, for images the images."""
        return usage_from(obj, metered)

    def stream_usage(self, obj: Any, so_far: Usage | None, metered: Metered) -> Usage | None:
        """A chat chunk's ``usage``, a closing response event's, a done event's."""
        return event_usage(obj, so_far, metered)

    def response_model(self, obj: Any) -> str | None:
        """``model``, or a streamed response's nested one."""
        return model_from(obj)


class OpenAISpec(OpenAIShapes):
    """OpenAI's API, as its API reference describes it."""

    name: ClassVar[str] = "openai"
    prefix: ClassVar[bytes] = b"/openai"
    gen_ai_system: ClassVar[str] = "openai"
    default_base: ClassVar[str] = "https://api.openai.com"
    base_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_BASE",)
    key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    # what clients of OpenAI-style gateways send besides a bearer token (Azure-style SDKs)
    caller_key_headers: ClassVar[tuple[bytes, ...]] = (b"api-key",)
    prices_file: ClassVar[str] = "openai.json"

    def credential(self, key: str) -> tuple[str, str]:
        """A bearer token."""
        return ("Authorization", "Bearer " + key)


class OpenAIPassthroughSpec(OpenAISpec):
    """OpenAI again at ``/openai_passthrough``, the prefix LiteLLM now recommends for its
    OpenAI pass-through: the same provider (name, upstream, key, usage, prices), one more
    route to it."""

    prefix: ClassVar[bytes] = b"/openai_passthrough"
