"""Mistral at ``/mistral``: ``MISTRAL_API_BASE`` (default ``https://api.mistral.ai``), the key
from ``MISTRAL_API_KEY`` sent as a bearer token.

Metered routes and their usage (the operations and usage shapes of Mistral's OpenAPI spec):
chat, FIM, agents, embeddings, classifiers and ``/v1/responses`` report a ``usage`` object;
conversations (start, append, restart) too, and ``conversation.response.done`` when streamed;
OCR reports ``usage_info.pages_processed`` (annotated pages when the request asked for
annotations); transcription reports ``usage.prompt_audio_seconds``; speech is priced by the
characters of the request's ``input``. Every other route (files, models, batch, ...) reports
no usage and costs nothing.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from passgate.exchange import Metered, RequestInfo, Usage
from passgate.providers import mistral_resources
from passgate.providers.base import ProviderSpec
from passgate.providers.shapes import count, model_named, token_usage

TOKENS = Metered("tokens")
CONVERSATION = Metered("conversation")
OCR = Metered("ocr")
TRANSCRIPTION = Metered("transcription")
SPEECH = "speech"

_ROUTES = {
    "/v1/chat/completions": TOKENS,
    "/v1/fim/completions": TOKENS,
    "/v1/agents/completions": TOKENS,
    "/v1/embeddings": TOKENS,
    "/v1/moderations": TOKENS,
    "/v1/chat/moderations": TOKENS,
    "/v1/classifications": TOKENS,
    "/v1/chat/classifications": TOKENS,
    "/v1/responses": TOKENS,
    "/v1/ocr": OCR,
    "/v1/audio/transcriptions": TRANSCRIPTION,
}
# start, append and restart; the GET routes under it return stored objects, not usage
_CONVERSATION = re.compile(r"/v1/conversations(?:/[^/]+(?:/restart)?)?")
_SPEECH_PATH = "/v1/audio/speech"


def page_usage(info: Any, annotated: bool) -> Usage | None:
    """An OCR ``usage_info`` object; every page is annotated when the request asked for it."""
    if not isinstance(info, dict):
        return None
    pages = count(info.get("pages_processed"))
    if pages is None:
        return None
    return Usage(pages=pages, annotated_pages=pages if annotated else 0)


def usage_from(obj: Any, annotated: bool = False) -> Usage | None:
    """The usage a parsed response body or SSE event reports, if any."""
    if not isinstance(obj, dict):
        return None
    if "usage_info" in obj:
        found = page_usage(obj["usage_info"], annotated)
        if found is not None:
            return found
    if "usage" in obj:
        return token_usage(obj["usage"])
    nested = obj.get("response")  # responses API stream: response.completed
    if isinstance(nested, dict) and "usage" in nested:
        return token_usage(nested["usage"])
    return None


def model_from(obj: Any) -> str | None:
    """The model a parsed response body or SSE event names, if any."""
    model = model_named(obj, "response")
    if model is not None or not isinstance(obj, dict):
        return model
    outputs = obj.get("outputs")  # conversations name the model on each output entry
    if isinstance(outputs, list):
        for entry in outputs:
            model = model_named(entry)
            if model is not None:
                return model
    return None


class MistralSpec(ProviderSpec):
    """Mistral's API, as its OpenAPI spec describes it."""

    name: ClassVar[str] = "mistral"
    prefix: ClassVar[bytes] = b"/mistral"
    gen_ai_system: ClassVar[str] = "mistral_ai"
    default_base: ClassVar[str] = "https://api.mistral.ai"
    base_env: ClassVar[tuple[str, ...]] = ("MISTRAL_API_BASE",)
    key_env: ClassVar[tuple[str, ...]] = ("MISTRAL_API_KEY",)
    # what clients of OpenAI-style gateways send besides a bearer token
    caller_key_headers: ClassVar[tuple[bytes, ...]] = (b"x-api-key", b"api-key")
    correlation_headers: ClassVar[tuple[bytes, ...]] = (b"mistral-correlation-id",)
    usage_keys: ClassVar[tuple[bytes, ...]] = (b"usage", b"usage_info")
    prices_file: ClassVar[str] = "mistral.json"
    always_enabled: ClassVar[bool] = True
    pooled: ClassVar[bool] = True

    def credential(self, key: str) -> tuple[str, str]:
        """A bearer token."""
        return ("Authorization", "Bearer " + key)

    def metered(self, method: str, api_path: str, info: RequestInfo) -> Metered | None:
        """Completions, embeddings, classifiers, conversations, OCR, audio."""
        if method != "POST":
            return None
        path = api_path.rstrip("/")
        found = _ROUTES.get(path)
        if found is not None:
            return found
        if path == _SPEECH_PATH:
            chars = info.input_chars
            return Metered(SPEECH, fixed=None if chars is None else Usage(characters=chars))
        if _CONVERSATION.fullmatch(path):
            return CONVERSATION
        return None

    def usage(self, obj: Any, metered: Metered, info: RequestInfo) -> Usage | None:
        """``usage`` or, for OCR, ``usage_info``."""
        return usage_from(obj, metered is OCR and info.annotations)

    def stream_usage(self, obj: Any, so_far: Usage | None, metered: Metered) -> Usage | None:
        """Each event that reports usage reports all of it: the last one wins."""
        found = usage_from(obj)
        return so_far if found is None else found

    def response_model(self, obj: Any) -> str | None:
        """``model``, or the responses API's and conversations' nested one."""
        return model_from(obj)

    def creates_resources(self, method: str, api_path: str) -> bool:
        """A POST to a collection, a fine-tuning job's answers (``mistral_resources``)."""
        return mistral_resources.creates_resources(method, api_path)

    def created_resources(self, method: str, api_path: str, answer: Any) -> tuple[str, ...]:
        """The new resource's ``id`` / ``conversation_id`` / ``fine_tuned_model``."""
        return mistral_resources.created_resources(method, api_path, answer)

    def path_resource(self, method: str, api_path: str) -> str | None:
        """The outermost resource id the path names."""
        return mistral_resources.path_resource(method, api_path)

    def referenced_resources(self, method: str, api_path: str, body: Any) -> tuple[str, ...]:
        """Agents, fine-tuned models and files a request body names."""
        return mistral_resources.referenced_resources(method, api_path, body)

    def lists_resources(self, method: str, api_path: str) -> bool:
        """Listings of files, jobs, agents, conversations, libraries, ..."""
        return mistral_resources.is_listing(method, api_path)
