"""Virtual key secrets, token ids and durations."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest

from passgate.auth.keys import (
    generate_key,
    hash_key,
    looks_like_key,
    looks_like_token,
    token_for,
)
from passgate.durations import parse_duration


def test_generated_keys_are_sk_and_32_or_more_url_safe_random_chars() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"sk-[A-Za-z0-9_-]{32,}", key), key


def test_token_id_is_the_sha256_hex_of_the_secret() -> None:
    key = generate_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert looks_like_token(hash_key(key))


@pytest.mark.parametrize(
    ("value", "is_key"),
    [
        ("sk-1234", True),
        ("sk-", False),
        ("sk-a b", False),
        ("sk-abc\n", False),
        ("xsk-abc", False),
        ("sk-" + "a" * 253, True),
        ("sk-" + "a" * 254, False),
        ("sk-é", False),
    ],
)
def test_key_shape(value: str, is_key: bool) -> None:
    assert looks_like_key(value) is is_key


def test_token_for_accepts_a_secret_or_a_token_id_and_nothing_else() -> None:
    key = generate_key()
    assert token_for(key) == hash_key(key)
    assert token_for(hash_key(key)) == hash_key(key)
    assert token_for(hash_key(key).upper()) is None
    assert token_for("x' OR 1=1 --") is None
    assert token_for(hash_key(key) + "\n") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("1mo", timedelta(days=30)),
        (" 1h ", timedelta(hours=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "h",
        "0s",
        "-1h",
        "1.5h",
        "1y",
        "1 h",
        "\u0661h",
        "999999999d",
        "999999999w",
        "999999999mo",
        "1hh",
    ],
)
def test_bad_durations_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="must"):
        parse_duration(text)
