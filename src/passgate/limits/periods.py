"""Budget periods: ``budget_duration`` strings and the next reset time.

A period is a fixed number of seconds, read with the same grammar as every other
duration of the gateway (``30s``, ``1m``, ``1h``, ``1d``, ``7d``, ``30d``, ``1mo`` = 30 days).
The next reset is always computed from the previous one (never from "now"), so
every instance, Redis and the database agree on the same reset instants.
"""

from __future__ import annotations

import math

from passgate.durations import parse_duration


def period_seconds(duration: str) -> float:
    """Seconds in a ``budget_duration``; ValueError when it cannot be read."""
    return parse_duration(duration).total_seconds()


def next_reset(reset_at: float, period: float, now: float) -> float:
    """The first reset instant after ``now`` on the grid ``reset_at + k * period``."""
    if now < reset_at:
        return reset_at
    return reset_at + period * (math.floor((now - reset_at) / period) + 1)
