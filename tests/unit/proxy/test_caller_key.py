"""The caller's gateway key: bearer, bare header values, and a query parameter taken out."""

from __future__ import annotations

import pytest

from passgate.proxy.caller_key import bearer, caller_key, take_query_key


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (b"Bearer sk-1", "sk-1"),
        (b"bearer   sk-1 ", "sk-1"),
        (b"sk-raw", "sk-raw"),
        (b"Bearer ", None),
        (b"", None),
    ],
)
def test_caller_key(value: bytes, key: str | None) -> None:
    assert caller_key(value) == key


def test_bearer_needs_the_scheme() -> None:
    assert bearer(b"Bearer t") == "t"
    assert bearer(b"Basic t") is None
    assert bearer(b"t") is None


@pytest.mark.parametrize(
    ("query", "kept", "key"),
    [
        (b"alt=sse&key=sk-1", b"alt=sse", "sk-1"),
        (b"key=sk-1", b"", "sk-1"),
        (b"a=1&key=sk%2D1&b=%20x", b"a=1&b=%20x", "sk-1"),
        (b"%6Bey=sk-1&a=1", b"a=1", "sk-1"),  # a percent-encoded name is the name
        (b"a=1&key", b"a=1", None),  # a bare flag goes too
        (b"keys=1&monkey=2", b"keys=1&monkey=2", None),
        (b"a=1&key=first&key=second", b"a=1", "first"),
    ],
)
def test_the_query_key_is_taken_out_and_the_rest_kept_byte_for_byte(
    query: bytes, kept: bytes, key: str | None
) -> None:
    assert take_query_key(query, b"key") == (kept, key)
