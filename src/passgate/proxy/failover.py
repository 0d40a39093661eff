"""When a call moves on to another deployment, and for how long a failed one is set aside.

The rules, applied only while nothing of the answer has reached the client:

- no connection, or the connection broke before the answer's head, or ``502`` / ``503`` /
  ``504``: another deployment is tried, at once the first time and after a jittered backoff
  from then on (a body the gateway streamed upstream instead of holding it is never sent
  twice);
- ``429``: the deployment cools down for the answer's ``Retry-After`` (or its rate-limit
  reset header, else a default) and another is tried at once;
- ``401`` / ``403``: the deployment's key is taken as dead for a long cooldown;
- any other status is the caller's answer.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from passgate.config import Settings
from passgate.proxy.deployments import KEY_REFUSED, RATE_LIMITED, UNAVAILABLE

_STATUS_VERDICT = {
    429: RATE_LIMITED,
    401: KEY_REFUSED,
    403: KEY_REFUSED,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
}
# Headers that say when a rate limit resets, in seconds (IETF's draft and common variants),
# read when an answer has no Retry-After.
_RESET_HEADERS = (b"ratelimit-reset", b"x-ratelimit-reset", b"x-ratelimit-reset-requests")
# A wait an upstream asks for is honoured up to a day: more is taken as a mistake.
_LONGEST_WAIT = 86_400.0


def verdict(status: int) -> str | None:
    """Why an answer with ``status`` sends the call to another deployment, or None when it
    is the caller's answer."""
    return _STATUS_VERDICT.get(status)


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    """How many deployments a call may try, the backoff between them, and the cooldowns."""

    max_attempts: int = 3
    backoff: float = 0.05  # seconds before the third attempt; doubled after each
    cooldown: float = 5.0  # after a connection failure or 502/503/504
    rate_limit_cooldown: float = 10.0  # after a 429 that says nothing of when to retry
    dead_cooldown: float = 600.0  # after 401/403: the key is refused
    draw: Callable[[], float] = random.random

    @classmethod
    def from_settings(cls, settings: Settings) -> FailoverPolicy:
        """The policy ``settings`` set."""
        return cls(
            max_attempts=settings.upstream_max_attempts,
            backoff=settings.upstream_retry_backoff,
            cooldown=settings.deployment_cooldown,
            rate_limit_cooldown=settings.deployment_rate_limit_cooldown,
            dead_cooldown=settings.deployment_dead_cooldown,
        )

    def delay(self, attempts: int, error: str) -> float:
        """Seconds to wait before the next attempt, after ``attempts`` and ``error``. The
        first move to another deployment is at once (it is another upstream: nothing is
        hammered); when that one fails too, something wider may be wrong, and each further
        attempt waits longer. A rate-limited or refused deployment is simply left, at once."""
        if attempts < 2 or error in (RATE_LIMITED, KEY_REFUSED) or self.backoff == 0:
            return 0.0
        jitter: float = 0.5 + self.draw()
        return self.backoff * float(2 ** (attempts - 2)) * jitter

    def wait(self, error: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> float:
        """How long a deployment is set aside after ``error`` (an answer's ``headers`` may
        say, for a 429)."""
        if error == KEY_REFUSED:
            return self.dead_cooldown
        if error == RATE_LIMITED:
            asked = retry_after(headers)
            return self.rate_limit_cooldown if asked is None else asked
        return self.cooldown  # no connection, a reset, 502/503/504


def retry_after(headers: Iterable[tuple[bytes, bytes]], now: float | None = None) -> float | None:
    """The seconds an answer asks the caller to wait: ``Retry-After`` (seconds or an HTTP
    date), else a rate-limit reset header in seconds; None when it says nothing usable."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        lower = name.lower()
        if lower == b"retry-after" or lower in _RESET_HEADERS:
            found.setdefault(lower, value)
    asked = found.get(b"retry-after")
    if asked is not None:
        seconds = _seconds(asked, now)
        if seconds is not None:
            return seconds
    for name in _RESET_HEADERS:
        reset = found.get(name)
        if reset is not None:
            seconds = _number(reset)
            if seconds is not None:
                return seconds
    return None


def _number(value: bytes) -> float | None:
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, _LONGEST_WAIT)


def _seconds(value: bytes, now: float | None) -> float | None:
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(wait, 0.0), _LONGEST_WAIT)
