"""A key's rate limits with their use right now, read from the counters the limits check.

``Counters.rate_state`` reads without writing, so opening the page never takes a
request, a token or a slot from the key. Where the counts come from follows the
backend: Redis holds the whole deployment's, the instance's limits process holds
every worker's of this instance, and with one worker the page is served by the
worker that counts the calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from passgate.limits.backend import LimitsUnavailable
from passgate.limits.directory import key_counter
from passgate.limits.instance import InstanceCounters
from passgate.limits.local import LocalCounters
from passgate.limits.runtime import Limits
from passgate.storage.models import Key

CountedBy = Literal["redis", "instance", "worker"]


@dataclass(frozen=True, slots=True)
class RateLine:
    """One rate limit of a key and how much of it is in use now."""

    name: str  # the row's id in the page
    label: str  # the limit
    used: int
    limit: int
    span: str  # what ``used`` counts


def counted_by(limits: Limits) -> CountedBy:
    """Which counters a page reading ``limits`` sees."""
    if isinstance(limits.counters, InstanceCounters):
        return "instance"
    if isinstance(limits.counters, LocalCounters):
        return "worker"
    return "redis"


async def rate_lines(limits: Limits, row: Key) -> list[RateLine] | None:
    """The key's rpm, tpm and parallel limits (only those it has) with their use now; None
    when the counters cannot be read."""
    limited = (row.rpm_limit, row.tpm_limit, row.max_parallel_requests)
    if all(limit is None for limit in limited):
        return []
    try:
        state = await limits.counters.rate_state(key_counter(row.token))
    except (LimitsUnavailable, OSError):
        return None
    lines = [
        RateLine(name, label, used, limit, span)
        for name, label, used, limit, span in (
            ("rate-rpm", "Requests per minute", state.requests, row.rpm_limit, "in the last 60 s"),
            ("rate-tpm", "Tokens per minute", state.tokens, row.tpm_limit, "this minute"),
            (
                "rate-parallel",
                "Parallel requests",
                state.parallel,
                row.max_parallel_requests,
                "in flight now",
            ),
        )
        if limit is not None
    ]
    return lines
