"""Virtual key secrets (pure functions).

A key is ``sk-`` followed by 43 URL-safe random characters (32 random bytes). Only its
SHA-256 hex digest is stored; that digest is the key's ``token`` id.
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "sk-"
KEY_RANDOM_BYTES = 32
MAX_KEY_LENGTH = 256
# Visible ASCII only: a key travels in an HTTP header.
KEY_PATTERN = r"^sk-[\x21-\x7e]{1,253}$"
_KEY_RE = re.compile(KEY_PATTERN)
_TOKEN_RE = re.compile(r"[0-9a-f]{64}")


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
