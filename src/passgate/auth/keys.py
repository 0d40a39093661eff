"""Virtual key secrets and durations (pure functions).

A key is ``sk-`` followed by 43 URL-safe random characters (32 random bytes). Only its
SHA-256 hex digest is stored; that digest is the key's ``token`` id.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

KEY_PREFIX = "sk-"
KEY_RANDOM_BYTES = 32
MAX_KEY_LENGTH = 256
# Visible ASCII only: a key travels in an HTTP header.
KEY_PATTERN = r"^sk-[\x21-\x7e]{1,253}$"
_KEY_RE = re.compile(KEY_PATTERN)
_TOKEN_RE = re.compile(r"[0-9a-f]{64}")
_DURATION_RE = re.compile(r"([0-9]{1,9})(s|m|h|d|w|mo)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400}
# Far enough for any real key, close enough that now + duration cannot overflow a datetime.
MAX_DURATION = timedelta(days=100 * 365)


def generate_key() -> str:
    """A new random virtual key."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def hash_key(key: str) -> str:
    """The key's token id: SHA-256 hex digest of the secret."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_key(value: str) -> bool:
    """True when ``value`` has the shape of a virtual key secret."""
    return _KEY_RE.fullmatch(value) is not None


def looks_like_token(value: str) -> bool:
    """True when ``value`` has the shape of a token id (lowercase SHA-256 hex)."""
    return _TOKEN_RE.fullmatch(value) is not None


def token_for(value: str) -> str | None:
    """The token id named by a plaintext key or a token id; None when it is neither."""
    if looks_like_key(value):
        return hash_key(value)
    if looks_like_token(value):
        return value
    return None


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
