"""The UI's session cookie codec and login throttle."""

from __future__ import annotations

import time

import pytest

from passgate.ui.session import LoginThrottle, SessionCodec, key_id, same_token


def test_a_session_reads_back_and_a_tampered_one_does_not() -> None:
    codec = SessionCodec("sk-master-1", ttl=60)
    session, cookie = codec.new("virtual", key_id("ab" * 32))
    assert codec.read(cookie) == session
    assert session.key_id == "ab" * 8
    assert codec.read(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None
    assert codec.read("") is None and codec.read(None) is None
    # another master key signs differently: changing it ends every session
    assert SessionCodec("sk-master-2", ttl=60).read(cookie) is None


def test_a_session_expires_after_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = SessionCodec("sk-master-1", ttl=60)
    _, cookie = codec.new("master")
    later = time.time() + 61
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later)
    assert codec.read(cookie) is None


def test_login_tokens_are_bound_to_their_cookie() -> None:
    codec = SessionCodec("sk-master-1", ttl=60)
    token, cookie = codec.login_token()
    other, _ = codec.login_token()
    assert codec.login_token_ok(cookie, token)
    assert not codec.login_token_ok(cookie, other)
    assert not codec.login_token_ok(None, token)
    assert not codec.login_token_ok("forged", token)


def test_csrf_tokens_compare_whole() -> None:
    assert same_token("abc", "abc")
    assert not same_token("abd", "abc") and not same_token(None, "abc")


def test_the_throttle_counts_per_address_within_the_window() -> None:
    now = [0.0]
    throttle = LoginThrottle(2, window=60, clock=lambda: now[0])
    assert throttle.allow("a") and throttle.allow("a")
    assert not throttle.allow("a")
    assert throttle.allow("b")
    now[0] = 61.0
    assert throttle.allow("a")
