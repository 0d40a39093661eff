"""Anthropic at ``/anthropic``: ``ANTHROPIC_API_BASE`` (default ``https://api.anthropic.com``),
the key from ``ANTHROPIC_API_KEY`` sent upstream as ``x-api-key``.

Callers present their gateway key as ``x-api-key`` or as ``Authorization: Bearer`` (what
the SDK and Claude Code send, depending on their version and settings); with both, the bearer
token is the gateway key. Neither reaches the upstream. ``anthropic-version`` and
``anthropic-beta`` pass through untouched.

Metered:

- ``POST /v1/messages``: the message's ``usage``. Anthropic's ``input_tokens`` leaves out the
  tokens read from the prompt cache (``cache_read_input_tokens``) and written to it
  (``cache_creation_input_tokens``); the normalised ``prompt_tokens`` counts all three. Writes
  for an hour (``cache_creation.ephemeral_1h_input_tokens``) are counted apart, priced at their
  own rate. Streamed, ``message_start`` carries the input side and ``message_delta`` the
  cumulative output (newer API versions repeat the input side there: the later count wins).
- ``GET /v1/messages/batches/{id}/results``: JSON lines, one result per request of the batch,
  each with its message's usage; their sum is priced at the batch discount. Each download of
  the results is recorded as such.
- ``POST /v1/messages/count_tokens``: free.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, ClassVar

from passgate.exchange import Metered, RequestInfo, Usage
from passgate.providers.base import ProviderSpec
from passgate.providers.shapes import MAX_COUNT, count, detail, model_named

MESSAGES = Metered("messages")
# served as application/binary: JSON lines all the same
BATCH_RESULTS = Metered("batch_results", discount=0.5, json_lines=True)
COUNT_TOKENS = Metered("count_tokens", free=True)

_BATCH_RESULTS = re.compile(r"/v1/messages/batches/[^/]+/results")
_CACHE_DETAILS = ("cache_creation",)
_OUTPUT_DETAILS = ("output_tokens_details",)
_SERVER_TOOLS = ("server_tool_use",)  # web searches, billed per request


def message_usage(usage: Any) -> Usage | None:
    """A message's ``usage`` object, normalised (every input token in ``prompt_tokens``)."""
    if not isinstance(usage, dict):
        return None
    fresh = count(usage.get("input_tokens"))
    read = count(usage.get("cache_read_input_tokens"))
    written = count(usage.get("cache_creation_input_tokens"))
    written_1h = detail(usage, _CACHE_DETAILS, "ephemeral_1h_input_tokens")
    if written is None:  # only the split by lifetime given
        written_5m = detail(usage, _CACHE_DETAILS, "ephemeral_5m_input_tokens")
        if written_5m is not None or written_1h is not None:
            written = (written_5m or 0) + (written_1h or 0)
    output = count(usage.get("output_tokens"))
    if fresh is None and read is None and written is None and output is None:
        return None
    inputs = (fresh, read, written)
    prompt = None if all(n is None for n in inputs) else sum(n or 0 for n in inputs)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        cached_tokens=read,
        cache_write_tokens=written,
        cache_write_1h_tokens=written_1h,
        reasoning_tokens=detail(usage, _OUTPUT_DETAILS, "thinking_tokens"),
        search_units=detail(usage, _SERVER_TOOLS, "web_search_requests"),
    )


def _merged(so_far: Usage | None, later: Usage) -> Usage:
    """``so_far`` with what a later event counted (a count it left out stays as it was)."""
    if so_far is None:
        return later
    changes = {
        name: value
        for name in ("completion_tokens", "cached_tokens", "cache_write_tokens")
        if (value := getattr(later, name)) is not None
    }
    if later.cache_write_1h_tokens is not None:
        changes["cache_write_1h_tokens"] = later.cache_write_1h_tokens
    # message_delta repeats input_tokens only on newer API versions: keep the input side
    # of message_start unless the delta names it
    if later.prompt_tokens is not None and later.prompt_tokens >= (so_far.prompt_tokens or 0):
        changes["prompt_tokens"] = later.prompt_tokens
    return replace(so_far, **changes)


_SUMMED = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "search_units",
)


def _sum(first: int | None, second: int | None) -> int | None:
    """Two counts added: unknown only when both are, capped where the spend log's columns end."""
    if first is None or second is None:
        return second if first is None else first
    return min(first + second, MAX_COUNT)


def _added(total: Usage | None, more: Usage) -> Usage:
    if total is None:
        return more
    return Usage(**{name: _sum(getattr(total, name), getattr(more, name)) for name in _SUMMED})


class AnthropicSpec(ProviderSpec):
    """Anthropic's API (Messages, Message Batches, Token Counting, Models, Files)."""

    name: ClassVar[str] = "anthropic"
    prefix: ClassVar[bytes] = b"/anthropic"
    gen_ai_system: ClassVar[str] = "anthropic"
    default_base: ClassVar[str] = "https://api.anthropic.com"
    base_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_BASE",)
    key_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    caller_key_headers: ClassVar[tuple[bytes, ...]] = (b"x-api-key",)
    correlation_headers: ClassVar[tuple[bytes, ...]] = (b"request-id",)
    usage_keys: ClassVar[tuple[bytes, ...]] = (b"usage",)
    prices_file: ClassVar[str] = "anthropic.json"

    def credential(self, key: str) -> tuple[str, str]:
        """Anthropic's own header."""
        return ("x-api-key", key)

    def metered(self, method: str, api_path: str, info: RequestInfo) -> Metered | None:
        """Messages, a batch's results, token counting (free)."""
        path = api_path.rstrip("/")
        if method == "POST":
            if path == "/v1/messages":
                return MESSAGES
            if path == "/v1/messages/count_tokens":
                return COUNT_TOKENS
            return None
        if method == "GET" and _BATCH_RESULTS.fullmatch(path):
            return BATCH_RESULTS
        return None

    def usage(self, obj: Any, metered: Metered, info: RequestInfo) -> Usage | None:
        """A message's ``usage`` (also when cut out of a large body)."""
        if isinstance(obj, dict):
            return message_usage(obj.get("usage"))
        return None

    def stream_usage(self, obj: Any, so_far: Usage | None, metered: Metered) -> Usage | None:
        """``message_start``, then ``message_delta``; a batch result line adds its message's."""
        if not isinstance(obj, dict):
            return so_far
        if metered is BATCH_RESULTS:
            result = obj.get("result")
            message = result.get("message") if isinstance(result, dict) else None
            found = message_usage(message.get("usage")) if isinstance(message, dict) else None
            return so_far if found is None else _added(so_far, found)
        kind = obj.get("type")
        if kind == "message_start":
            message = obj.get("message")
            found = message_usage(message.get("usage")) if isinstance(message, dict) else None
        else:  # message_delta, or a usage object cut out of a large event
            found = message_usage(obj.get("usage"))
        return so_far if found is None else _merged(so_far, found)

    def response_model(self, obj: Any) -> str | None:
        """``model``, or ``message.model`` (``message_start``, a batch result)."""
        model = model_named(obj, "message")
        if model is None and isinstance(obj, dict):
            model = model_named(obj.get("result"), "message")
        return model
