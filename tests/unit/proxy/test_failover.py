"""The failover rules: which answers move a call on, and how long a deployment rests."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from passgate.proxy.deployments import (
    CONNECT_FAILED,
    KEY_REFUSED,
    RATE_LIMITED,
    RESET,
    UNAVAILABLE,
)
from passgate.proxy.failover import FailoverPolicy, retry_after, verdict


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (400, None),
        (404, None),
        (422, None),
        (500, None),
        (429, RATE_LIMITED),
        (401, KEY_REFUSED),
        (403, KEY_REFUSED),
        (502, UNAVAILABLE),
        (503, UNAVAILABLE),
        (504, UNAVAILABLE),
    ],
)
def test_only_some_statuses_move_a_call_on(status: int, expected: str | None) -> None:
    assert verdict(status) == expected


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after([(b"Retry-After", b"2")]) == 2.0
    assert retry_after([(b"retry-after", b" 1.5 ")]) == 1.5
    now = 1_000_000.0
    date = formatdate(now + 30, usegmt=True).encode()
    assert retry_after([(b"retry-after", date)], now=now) == pytest.approx(30.0)
    assert retry_after([(b"retry-after", formatdate(now - 30, usegmt=True).encode())], now) == 0.0


def test_reset_headers_when_there_is_no_retry_after() -> None:
    assert retry_after([(b"x-ratelimit-reset", b"12")]) == 12.0
    assert retry_after([(b"ratelimit-reset", b"3"), (b"retry-after", b"soon")]) == 3.0
    assert retry_after([(b"retry-after", b"nonsense")]) is None
    assert retry_after([(b"retry-after", b"-5")]) is None
    assert retry_after([(b"retry-after", b"nan")]) is None
    assert retry_after([(b"retry-after", b"1e12")]) == 86_400.0  # capped at a day
    assert retry_after([]) is None


@given(st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40)), max_size=5))
def test_retry_after_never_raises(headers: list[tuple[bytes, bytes]]) -> None:
    found = retry_after([(b"retry-after", v) for _, v in headers] + headers)
    assert found is None or 0.0 <= found <= 86_400.0


def test_waits_and_backoff() -> None:
    policy = FailoverPolicy(
        backoff=0.1, cooldown=5, rate_limit_cooldown=10, dead_cooldown=600, draw=lambda: 0.5
    )
    assert policy.wait(RATE_LIMITED, [(b"retry-after", b"2")]) == 2.0
    assert policy.wait(RATE_LIMITED) == 10
    assert policy.wait(KEY_REFUSED) == 600
    assert policy.wait(CONNECT_FAILED) == policy.wait(RESET) == policy.wait(UNAVAILABLE) == 5
    assert policy.delay(1, CONNECT_FAILED) == 0.0  # the first move to another: at once
    assert policy.delay(2, CONNECT_FAILED) == pytest.approx(0.1)
    assert policy.delay(3, UNAVAILABLE) == pytest.approx(0.2)
    assert policy.delay(1, RATE_LIMITED) == 0.0  # another deployment, at once
    assert policy.delay(1, KEY_REFUSED) == 0.0
