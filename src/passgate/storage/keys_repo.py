"""Queries on the ``keys`` table; every function takes the caller's session.

Callers own the transaction (``async with sessions.begin()``) so that a check and the
write that depends on it happen together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from passgate.storage.models import Key, utcnow

# Columns an update may set; the token and timestamps are managed here.
UPDATABLE = frozenset(
    {
        "key_alias",
        "user_id",
        "team_id",
        "end_user_id",
        "models",
        "allowed_routes",
        "allowed_deployments",
        "max_budget",
        "budget_duration",
        "budget_reset_at",
        "rpm_limit",
        "tpm_limit",
        "max_parallel_requests",
        "metadata_",
        "blocked",
        "expires",
    }
)


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Filters of /key/list; None means "any"."""

    user_id: str | None = None
    team_id: str | None = None
    key_alias: str | None = None


async def get(session: AsyncSession, token: str) -> Key | None:
    """The key with this token id."""
    return await session.get(Key, token)


async def get_by_alias(session: AsyncSession, alias: str) -> Key | None:
    """The key with this alias."""
    result = await session.execute(select(Key).where(Key.key_alias == alias))
    return result.scalar_one_or_none()


async def find_for_auth(session: AsyncSession, token: str) -> Key | None:
    """The key whose current id, or id replaced by a regeneration, is ``token``."""
    result = await session.execute(
        select(Key).where(or_(Key.token == token, Key.grace_token == token)).limit(1)
    )
    return result.scalar_one_or_none()


async def add(session: AsyncSession, key: Key) -> Key:
    """Insert a new key (flushes, so a duplicate fails here)."""
    session.add(key)
    await session.flush()
    return key


async def update(session: AsyncSession, token: str, values: Mapping[str, Any]) -> Key | None:
    """Set columns of a key; None when there is no such key."""
    unknown = set(values) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    key = await session.get(Key, token)
    if key is None:
        return None
    for name, value in values.items():
        setattr(key, name, value)
    key.updated_at = utcnow()
    await session.flush()
    return key


async def replace_token(
    session: AsyncSession, key: Key, new_token: str, grace_until: datetime | None = None
) -> Key:
    """Give a key a new id (its secret changed); the old id stays valid until ``grace_until``."""
    old_token = key.token
    key.token = new_token
    key.grace_token = old_token if grace_until is not None else None
    key.grace_until = grace_until
    key.updated_at = utcnow()
    await session.flush()
    return key


async def delete_tokens(
    session: AsyncSession, tokens: Sequence[str]
) -> list[tuple[str, str | None]]:
    """Delete keys by id; returns (id, replaced id) of the keys that existed."""
    if not tokens:
        return []
    result = await session.execute(
        delete(Key).where(Key.token.in_(tokens)).returning(Key.token, Key.grace_token)
    )
    return [(token, grace) for token, grace in result]


async def tokens_for_aliases(session: AsyncSession, aliases: Sequence[str]) -> dict[str, str]:
    """Alias -> token id, for the aliases that exist."""
    if not aliases:
        return {}
    result = await session.execute(
        select(Key.key_alias, Key.token).where(Key.key_alias.in_(aliases))
    )
    return {alias: token for alias, token in result if alias is not None}


async def existing_tokens(session: AsyncSession, tokens: Sequence[str]) -> set[str]:
    """The ids among ``tokens`` that name a key."""
    if not tokens:
        return set()
    result = await session.execute(select(Key.token).where(Key.token.in_(tokens)))
    return set(result.scalars())


async def page(
    session: AsyncSession, filters: KeyFilter, page_number: int, size: int
) -> tuple[list[Key], int]:
    """One page of keys (newest first) and the total count matching the filters."""
    conditions = [
        column == value
        for column, value in (
            (Key.user_id, filters.user_id),
            (Key.team_id, filters.team_id),
            (Key.key_alias, filters.key_alias),
        )
        if value is not None
    ]
    total = await session.scalar(select(func.count()).select_from(Key).where(*conditions))
    result = await session.execute(
        select(Key)
        .where(*conditions)
        .order_by(Key.created_at.desc(), Key.token)
        .offset((page_number - 1) * size)
        .limit(size)
    )
    return list(result.scalars()), int(total or 0)
