"""Cohere: ``/cohere/...`` to ``COHERE_API_BASE``, bearer ``COHERE_API_KEY``, billed units as usage.

Cohere reports two counts per call: ``tokens`` (every token the model read and wrote) and
``billed_units`` (what Cohere invoices: it leaves out the tokens Cohere adds on its own, such
as its chat template and special tokens). Usage is read from ``billed_units`` only, so the cost
matches the invoice. Where the counts sit:

- ``POST /v2/chat``: ``usage.billed_units`` (and ``usage.cached_tokens``); streamed as SSE, the
  ``message-end`` event carries the same object under ``delta.usage``.
- ``POST /v1/chat``, embed, rerank, parse and the legacy generate and summarize routes:
  ``meta.billed_units`` (and ``meta.cached_tokens``); a streamed v1 chat is JSON lines whose
  last, ``stream-end``, carries the whole response with its ``meta``.

Rerank is billed per search unit (``billed_units.search_units``), parse per page
(``billed_units.pages``). No Cohere response names the model: the request's model prices it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from passgate.exchange import Metered, RequestInfo, Usage
from passgate.providers.base import ProviderSpec
from passgate.providers.shapes import count

NAME = "cohere"

CHAT = "chat"
EMBED = "embed"
RERANK = "rerank"
PARSE = "parse"
GENERATE = "generate"

# POST routes whose answer reports billed units; every other route (models, tokenize,
# datasets, connectors, embed jobs, fine-tuning, batches, audio transcriptions) reports none.
_ROUTES = {
    "/v1/chat": Metered(CHAT),
    "/v2/chat": Metered(CHAT),
    "/v1/embed": Metered(EMBED),
    "/v2/embed": Metered(EMBED),
    "/v1/rerank": Metered(RERANK),
    "/v2/rerank": Metered(RERANK),
    "/v2/parse": Metered(PARSE),
    "/v1/generate": Metered(GENERATE),
    "/v1/summarize": Metered(GENERATE),
}


def billed_usage(container: Any) -> Usage | None:
    """Usage from an object holding ``billed_units`` (a v2 ``usage`` or a v1 ``meta``).

    ``cached_tokens`` is counted over every prompt token while ``input_tokens`` counts only the
    billed ones, so it is capped at the billed input: the normalised usage counts cached
    tokens as part of the prompt.
    """
    if not isinstance(container, dict):
        return None
    billed = container.get("billed_units")
    if not isinstance(billed, dict):
        return None
    prompt = count(billed.get("input_tokens"))
    if prompt is None:
        # Embed v4 with images may report text and image tokens apart instead of input_tokens
        text = count(billed.get("text_tokens"))
        image = count(billed.get("image_tokens"))
        if text is not None or image is not None:
            prompt = count((text or 0) + (image or 0))
    completion = count(billed.get("output_tokens"))
    search_units = count(billed.get("search_units"))
    pages = count(billed.get("pages"))
    if prompt is None and completion is None and search_units is None and pages is None:
        return None
    cached = count(container.get("cached_tokens"))
    if cached is not None:
        cached = None if prompt is None else min(cached, prompt)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        search_units=search_units,
        pages=pages,
    )


class CohereSpec(ProviderSpec):
    """The Cohere API (v1 and v2) behind ``/cohere``."""

    name: ClassVar[str] = NAME
    prefix: ClassVar[bytes] = b"/cohere"
    gen_ai_system: ClassVar[str] = "cohere"
    default_base: ClassVar[str] = "https://api.cohere.com"
    base_env: ClassVar[tuple[str, ...]] = ("COHERE_API_BASE",)
    # COHERE_API_KEY is LiteLLM's name; CO_API_KEY the one Cohere's own SDKs read
    key_env: ClassVar[tuple[str, ...]] = ("COHERE_API_KEY", "CO_API_KEY")
    # Cohere sends no x-request-id; its trace id is what its support asks for
    correlation_headers: ClassVar[tuple[bytes, ...]] = (b"x-debug-trace-id",)
    # v2 chat and its message-end event: "usage"; v1 answers, stream-end, embed, rerank: "meta"
    usage_keys: ClassVar[tuple[bytes, ...]] = (b"meta", b"usage")
    prices_file: ClassVar[str] = "cohere.json"

    def credential(self, key: str) -> tuple[str, str]:
        """Cohere takes its key as a bearer token."""
        return ("Authorization", "Bearer " + key)

    def metered(self, method: str, api_path: str, info: RequestInfo) -> Metered | None:
        """Chat, embed, rerank, parse, generate and summarize (POST) report billed units."""
        if method != "POST":
            return None
        return _ROUTES.get(api_path.rstrip("/"))

    def usage(self, obj: Any, metered: Metered, info: RequestInfo) -> Usage | None:
        """Billed units of a whole answer: ``usage`` (v2 chat), else ``meta`` (the rest)."""
        if not isinstance(obj, dict):
            return None
        found = billed_usage(obj.get("usage"))
        return found if found is not None else billed_usage(obj.get("meta"))

    def stream_usage(self, obj: Any, so_far: Usage | None, metered: Metered) -> Usage | None:
        """Billed units of v2's ``message-end`` event or v1's ``stream-end`` line."""
        if not isinstance(obj, dict):
            return so_far
        if obj.get("type") == "message-end":
            delta = obj.get("delta")
            found = billed_usage(delta.get("usage")) if isinstance(delta, dict) else None
        elif obj.get("event_type") == "stream-end":
            response = obj.get("response")
            found = billed_usage(response.get("meta")) if isinstance(response, dict) else None
        else:
            return so_far
        return so_far if found is None else found
