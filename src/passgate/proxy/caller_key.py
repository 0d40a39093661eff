"""The caller's gateway key, wherever its provider's clients put it.

Every provider's callers may send ``Authorization: Bearer KEY``; a provider may name more
headers (``x-api-key``, ``x-goog-api-key``: the relay reads those into the same slot) and a
query parameter (``?key=``), which is taken out of the query string forwarded upstream,
leaving the rest of it byte for byte.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes


def bearer(value: bytes) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` value; None for another scheme or
    an empty token (the admin API's rule)."""
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip().decode("latin-1") or None


def caller_key(value: bytes | None) -> str | None:
    """The key in an ``Authorization: Bearer KEY`` value, or the value itself when it has no
    bearer scheme (an ``x-api-key`` header's); None when empty."""
    if value is None:
        return None
    scheme, _, token = value.partition(b" ")
    if scheme.lower() == b"bearer":
        return token.strip().decode("latin-1") or None
    return value.strip().decode("latin-1") or None


def take_query_key(query: bytes, name: bytes) -> tuple[bytes, str | None]:
    """``query`` without its ``name=`` parameters, and the first one's (decoded) value."""
    if name not in query and b"%" not in query:  # the name, plain or percent-encoded
        return query, None
    found: str | None = None
    kept = []
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == name:
            if found is None:
                found = unquote_to_bytes(value.replace(b"+", b" ")).decode("latin-1") or None
            continue
        kept.append(part)
    return b"&".join(kept), found
