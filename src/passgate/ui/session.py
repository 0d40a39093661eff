"""The UI's signed session cookie, its CSRF token, and the login throttle.

The cookie holds who is logged in (``master``, or a virtual key named by the first
``KEY_ID_LENGTH`` hex digits of its hash id, which identify it without being usable as
a credential), a random CSRF token, and is signed with a secret derived from the master
key: changing the master key ends every session. ``itsdangerous`` signs and dates it;
sessions older than ``ui_session_ttl`` are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "passgate_ui"
LOGIN_COOKIE = "passgate_ui_login"  # the login form's CSRF token, before there is a session
KEY_ID_LENGTH = 16
_SALT = "passgate-ui-session"
_LOGIN_SALT = "passgate-ui-login"
_LOGIN_FORM_AGE = 3600

SessionKind = Literal["master", "virtual"]


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in browser: who it is and its CSRF token."""

    kind: SessionKind
    key_id: str  # "" for the master key
    csrf: str


def key_id(token: str) -> str:
    """The short id the UI names a key by: the start of its hash id."""
    return token[:KEY_ID_LENGTH]


def same_token(given: str | None, expected: str) -> bool:
    """True when a submitted CSRF token is the session's (constant-time)."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class SessionCodec:
    """Signs and reads session cookies; the secret comes from the master key."""

    def __init__(self, master_key: str, ttl: float) -> None:
        secret = hmac.new(master_key.encode(), b"passgate-ui-session-secret", hashlib.sha256)
        self._sessions = URLSafeTimedSerializer(secret.hexdigest(), salt=_SALT)
        self._logins = URLSafeTimedSerializer(secret.hexdigest(), salt=_LOGIN_SALT)
        self.ttl = ttl

    def new(self, kind: SessionKind, key: str = "") -> tuple[Session, str]:
        """A new session and its cookie value."""
        session = Session(kind, key, secrets.token_urlsafe(32))
        return session, self._sessions.dumps([session.kind, session.key_id, session.csrf])

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie value; None when missing, forged or expired."""
        if not cookie:
            return None
        try:
            kind, key, csrf = self._sessions.loads(cookie, max_age=int(self.ttl))
        except (BadSignature, ValueError, TypeError):
            return None
        if kind not in ("master", "virtual") or not isinstance(csrf, str):
            return None
        return Session(kind, str(key), csrf)

    def login_token(self) -> tuple[str, str]:
        """(token for the login form, value of the cookie that vouches for it)."""
        token = secrets.token_urlsafe(32)
        return token, self._logins.dumps(token)

    def login_token_ok(self, cookie: str | None, given: str | None) -> bool:
        """True when the login form's token matches its signed cookie."""
        if not cookie or not given:
            return False
        try:
            expected = self._logins.loads(cookie, max_age=_LOGIN_FORM_AGE)
        except (BadSignature, ValueError, TypeError):
            return False
        return isinstance(expected, str) and same_token(given, expected)


class LoginThrottle:
    """At most ``attempts`` login attempts per ``window`` seconds from one client address.

    Each worker process counts its own attempts: with N workers an address gets at most
    N times the limit, still far too few to guess a key.
    """

    def __init__(
        self, attempts: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._attempts = attempts
        self._window = window
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def allow(self, address: str) -> bool:
        """Count an attempt from ``address``; False when it is over the limit."""
        now = self._clock()
        if len(self._seen) > 10_000:  # bounded memory whatever the number of addresses
            self._forget_idle(now)
        times = self._seen.setdefault(address, deque())
        while times and now - times[0] >= self._window:
            times.popleft()
        if len(times) >= self._attempts:
            return False
        times.append(now)
        return True

    def _forget_idle(self, now: float) -> None:
        for address in [a for a, t in self._seen.items() if not t or now - t[-1] >= self._window]:
            del self._seen[address]
        if len(self._seen) > 10_000:
            self._seen.clear()
