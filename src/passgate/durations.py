"""The gateway's one duration grammar: ``30s``, ``15m``, ``1h``, ``7d``, ``2w``, ``1mo``.

Key lifetimes, budget periods and every other duration setting read it, so it lives
in the core rather than in any one feature.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION_RE = re.compile(r"([0-9]{1,9})(s|m|h|d|w|mo)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400}
# Far enough for any real key, close enough that now + duration cannot overflow a datetime.
MAX_DURATION = timedelta(days=100 * 365)


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``, ``15m``, ``1h``, ``7d``, ``2w``, ``1mo`` (30 days); ValueError otherwise."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            "must be a number followed by s, m, h, d, w or mo (for example 30s, 1h, 7d, 30d)"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    # Compared as a number first: nine digits of weeks overflow a timedelta.
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError("must be at most 100 years")
    return timedelta(seconds=seconds)
