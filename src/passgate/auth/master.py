"""The master key: the one credential that needs no database."""

from __future__ import annotations

import hmac

from passgate.errors import unauthorized
from passgate.principal import MASTER, OPEN, Principal

MISSING = "missing API key: send 'Authorization: Bearer <key>'"
WRONG = "invalid API key"


class MasterKey:
    """Checks a bearer token against the master key in constant time."""

    def __init__(self, master_key: str | None) -> None:
        self._key = master_key.encode() if master_key else None

    @property
    def open(self) -> bool:
        """No master key is set: the gateway runs without authentication."""
        return self._key is None

    def matches(self, token: str) -> bool:
        """True when ``token`` is the master key (constant-time comparison)."""
        return self._key is not None and hmac.compare_digest(token.encode(), self._key)


class MasterKeyAuthenticator:
    """An ``Authenticator`` that knows only the master key (or runs open without one)."""

    def __init__(self, master: MasterKey) -> None:
        self._master = master

    async def authenticate(self, token: str | None, ex: object) -> Principal:
        """The master principal, or 401."""
        if self._master.open:
            return OPEN
        if token is None:
            raise unauthorized(MISSING, code="missing_api_key")
        if self._master.matches(token):
            return MASTER
        raise unauthorized(WRONG)
