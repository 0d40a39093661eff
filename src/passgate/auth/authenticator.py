"""Who is calling: the master key, a virtual key, or anyone (open gateway).

Messages never contain the presented key nor its hash: a caller learns only why
the key was refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from passgate import errors
from passgate.auth.cache import KeyCache
from passgate.auth.key_state import KeyState
from passgate.auth.keys import hash_key, looks_like_key
from passgate.auth.master import MISSING, MasterKey
from passgate.exchange import Exchange
from passgate.principal import MASTER, OPEN, Principal

log = logging.getLogger(__name__)

UNKNOWN_KEY = "Invalid API key: it is not the master key nor a known virtual key."


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


class KeyAuthenticator:
    """Resolves bearer tokens to principals; implements ``proxy.hooks.Authenticator``.

    With no master key the gateway is open: any caller is admitted as ``OPEN``,
    except that a known virtual key still runs as itself (its limits apply).
    """

    def __init__(
        self, master: MasterKey, cache: KeyCache, clock: Callable[[], float] = time.time
    ) -> None:
        self._master = master
        self._cache = cache
        self._clock = clock

    @property
    def master(self) -> MasterKey:
        """The gateway's master key (the one ``MasterKey`` of an app)."""
        return self._master

    async def authenticate(self, token: str | None, ex: Exchange) -> Principal:
        """The caller of a pass-through request; adds the key's tags to ``ex.tags``."""
        principal = await self.resolve(token)
        tags = principal.metadata.get("tags")
        if isinstance(tags, list):
            ex.tags.extend(t for t in tags if isinstance(t, str) and t not in ex.tags)
        return principal

    async def resolve(self, token: str | None) -> Principal:
        """The caller for a bearer token, or ``GatewayError`` 401."""
        if not self._master.open:
            if not token:
                raise errors.unauthorized(MISSING, "missing_api_key")
            if self._master.matches(token):
                return MASTER
        if not token or not looks_like_key(token):
            if self._master.open:
                return OPEN
            raise errors.unauthorized(UNKNOWN_KEY)
        state = await self._lookup(hash_key(token))
        if state is None:
            if self._master.open:
                return OPEN
            raise errors.unauthorized(UNKNOWN_KEY)
        self._check(state)
        return state.principal

    async def _lookup(self, token_id: str) -> KeyState | None:
        try:
            return await self._cache.get(token_id)
        except (SQLAlchemyError, OSError) as exc:
            # The exception text may carry SQL parameters (the key hash): log its type only.
            log.error("key lookup failed: %s", type(exc).__name__)
            raise errors.unavailable(
                "The key store is unavailable; try again shortly.", "key_store_unavailable"
            ) from None

    def _check(self, state: KeyState) -> None:
        now = self._clock()
        if state.replaced and (state.grace_until is None or now >= state.grace_until):
            raise errors.unauthorized(
                "API key was regenerated: use the new key.", "key_regenerated"
            )
        if state.blocked:
            raise errors.unauthorized(
                "API key is blocked: ask an admin to unblock it.", "key_blocked"
            )
        if state.expires_at is not None and now >= state.expires_at:
            raise errors.unauthorized(
                f"API key expired at {_iso(state.expires_at)}.", "key_expired"
            )
