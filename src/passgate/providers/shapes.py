"""Reading counts out of parsed JSON, and the usage object OpenAI's API made common.

Providers whose answers carry a chat-completions ``usage`` object (``prompt_tokens``,
``completion_tokens``, ``total_tokens`` and their details) read it here; every count is
checked to be a whole number the spend log can store, and anything else reads as unknown.
"""

from __future__ import annotations

import math
from typing import Any

from passgate.exchange import Usage

MAX_COUNT = 2**31 - 1  # the spend log stores counts in 32-bit integer columns


def seconds(value: Any) -> float | None:
    """A non-negative finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and value > MAX_COUNT:
        return None  # float() of a huge int raises; no real usage is that large
    number = float(value)
    return number if 0 <= number < math.inf else None


def count(value: Any) -> int | None:
    """A count the spend log can store, else None."""
    if type(value) is int and 0 <= value <= MAX_COUNT:  # the usual case, checked first
        return value
    number = seconds(value)
    return None if number is None or number > MAX_COUNT else int(number)


def model_named(obj: Any, *holders: str) -> str | None:
    """``obj["model"]``, else the ``model`` of the first of ``holders`` (nested objects, as a
    streamed response's ``response`` or a message event's ``message``) that names one."""
    if not isinstance(obj, dict):
        return None
    model = obj.get("model")
    if isinstance(model, str) and model:
        return model
    for name in holders:
        nested = obj.get(name)
        if isinstance(nested, dict):
            model = nested.get("model")
            if isinstance(model, str) and model:
                return model
    return None


def detail(usage: dict[str, Any], names: tuple[str, ...], field: str) -> int | None:
    """``usage[name][field]`` for the first of ``names`` that holds a count of it."""
    for name in names:
        details = usage.get(name)
        if isinstance(details, dict):
            found = count(details.get(field))
            if found is not None:
                return found
    return None


_INPUT_DETAILS = ("prompt_tokens_details", "prompt_token_details", "input_tokens_details")


def _cached_tokens(usage: dict[str, Any]) -> int | None:
    # chat: prompt_tokens_details (and the prompt_token_details spelling some specs use);
    # responses API: input_tokens_details; some servers: num_cached_tokens
    found = detail(
        usage,
        ("prompt_tokens_details", "prompt_token_details", "input_tokens_details"),
        "cached_tokens",
    )
    if found is not None:
        return found
    for name in ("num_cached_tokens", "prompt_cache_hit_tokens"):
        found = count(usage.get(name))
        if found is not None:
            return found
    return None


def token_usage(usage: Any) -> Usage | None:
    """A chat-completions style ``usage`` object (chat, completions, embeddings,
    transcriptions, the responses API's ``input_tokens``/``output_tokens`` spelling)."""
    if not isinstance(usage, dict):
        return None
    if len(usage) == 3:
        # Most answers (chat, embeddings): three counts and nothing else, so nothing cached
        # and no audio. Read at once, without the general path below, which costs more.
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        total = usage.get("total_tokens")
        if (
            type(prompt) is int
            and type(completion) is int
            and type(total) is int
            and 0 <= prompt <= MAX_COUNT
            and 0 <= completion <= MAX_COUNT
            and 0 <= total <= MAX_COUNT
        ):
            return Usage(prompt, completion, None, total)
    prompt = count(usage.get("prompt_tokens"))
    if prompt is None:
        prompt = count(usage.get("input_tokens"))
    completion = count(usage.get("completion_tokens"))
    if completion is None:
        completion = count(usage.get("output_tokens"))
    total = count(usage.get("total_tokens"))
    audio = seconds(usage.get("prompt_audio_seconds"))
    if prompt is None and completion is None and total is None and audio is None:
        return None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=_cached_tokens(usage),
        total_tokens=total,
        audio_seconds=audio,
        reasoning_tokens=detail(
            usage, ("completion_tokens_details", "output_tokens_details"), "reasoning_tokens"
        ),
    )
