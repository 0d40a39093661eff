"""What the authenticator needs to know about one virtual key, read from the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from passgate.principal import Principal
from passgate.storage import keys_repo
from passgate.storage.models import Key


@dataclass(frozen=True, slots=True)
class KeyState:
    """A key as the cache holds it; times are epoch seconds, checked on every request."""

    principal: Principal
    blocked: bool = False
    expires_at: float | None = None
    # Set when the secret presented is one replaced by /key/regenerate: the old
    # secret is accepted until this time (None: it is no longer accepted at all).
    replaced: bool = False
    grace_until: float | None = None


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def principal_from_key(row: Key) -> Principal:
    """The principal a request made with this key runs as."""
    metadata: dict[str, Any] = dict(row.metadata_ or {})
    return Principal(
        kind="virtual",
        token=row.token,
        key_alias=row.key_alias,
        user_id=row.user_id,
        team_id=row.team_id,
        end_user_id=row.end_user_id,
        models=tuple(row.models or ()),
        allowed_routes=tuple(row.allowed_routes or ()),
        allowed_deployments=tuple(row.allowed_deployments or ()),
        max_budget=row.max_budget,
        budget_duration=row.budget_duration,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        max_parallel_requests=row.max_parallel_requests,
        metadata=metadata,
    )


def state_from_key(row: Key, token: str) -> KeyState:
    """The cached state for ``token``, which is either the key's id or its replaced id."""
    replaced = row.token != token
    return KeyState(
        principal=principal_from_key(row),
        blocked=row.blocked,
        expires_at=_epoch(row.expires),
        replaced=replaced,
        grace_until=_epoch(row.grace_until) if replaced else None,
    )


class KeyStateLoader:
    """Reads a key's state from the database for the cache (one query, by indexed id)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def __call__(self, token: str) -> KeyState | None:
        """The state of the key whose current or replaced id is ``token``, or None."""
        async with self._sessions() as session:
            row = await keys_repo.find_for_auth(session, token)
        return None if row is None else state_from_key(row, token)
