"""Key management operations, shared by the /key routes and the ``passgate keys`` CLI.

Each operation is one transaction; afterwards the affected token ids are dropped
from this process's key cache so the change applies to the next request at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from passgate import errors
from passgate.api.key_schemas import (
    DeleteKeysRequest,
    GenerateKeyRequest,
    KeySettings,
    ListQuery,
    RegenerateKeyRequest,
    UpdateKeyRequest,
)
from passgate.auth.cache import KeyCache
from passgate.auth.key_feed import record_changes
from passgate.auth.keys import generate_key, hash_key, token_for
from passgate.auth.master import MasterKey
from passgate.durations import parse_duration
from passgate.errors import GatewayError
from passgate.storage import keys_repo
from passgate.storage.models import Key, utcnow

_PLAIN_FIELDS = (
    "key_alias",
    "user_id",
    "team_id",
    "end_user_id",
    "max_budget",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
)


def conflict(message: str) -> GatewayError:
    """A 409: the value is already taken."""
    return GatewayError(409, message, "invalid_request_error", "conflict")


def key_not_found() -> GatewayError:
    """A 404 that does not repeat the key it was asked about."""
    return errors.not_found("No such key.", "key_not_found")


def settings_columns(
    req: KeySettings, current_metadata: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The key columns set by the fields present in ``req`` (absent fields are left alone)."""
    given = req.model_fields_set
    values: dict[str, Any] = {name: getattr(req, name) for name in _PLAIN_FIELDS if name in given}
    if "models" in given:
        values["models"] = list(req.models or [])
    if "allowed_routes" in given:
        values["allowed_routes"] = list(req.allowed_routes or [])
    if "allowed_deployments" in given:
        values["allowed_deployments"] = list(req.allowed_deployments or [])
    if "blocked" in given:
        values["blocked"] = bool(req.blocked)
    if "duration" in given:
        values["expires"] = now + parse_duration(req.duration) if req.duration else None
    if "budget_duration" in given:
        values["budget_duration"] = req.budget_duration
        values["budget_reset_at"] = (
            now + parse_duration(req.budget_duration) if req.budget_duration else None
        )
    if "metadata" in given or "tags" in given:
        metadata = dict(req.metadata or {}) if "metadata" in given else dict(current_metadata)
        if "tags" in given:
            metadata["tags"] = list(req.tags or [])
        values["metadata_"] = metadata
    return values


@asynccontextmanager
async def _unique_violation_is_conflict() -> AsyncIterator[None]:
    # The checks above catch the common case; this covers two writers racing.
    try:
        yield
    except IntegrityError:
        raise conflict("key or key_alias: already used by another key") from None


class KeyService:
    """Creates, reads, changes and deletes virtual keys."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cache: KeyCache | None = None,
        master: MasterKey | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_change: Callable[[str], None] | None = None,
        propagation_delay: float = 0.0,
    ) -> None:
        self._sessions = sessions
        self._cache = cache
        self._master = master
        self._clock = clock
        self._on_change = on_change
        self._propagation_delay = propagation_delay

    async def generate(self, req: GenerateKeyRequest) -> tuple[str, Key]:
        """Create a key; returns its secret (shown this once) and its row."""
        secret = req.key or generate_key()
        self._check_not_master("key", secret)
        values = settings_columns(req, {}, self._clock())
        row = Key(token=hash_key(secret), **values)
        async with _unique_violation_is_conflict(), self._sessions.begin() as session:
            if await keys_repo.find_for_auth(session, row.token) is not None:
                raise conflict("key: a key with this secret already exists")
            await self._check_alias(session, row.key_alias, None)
            await keys_repo.add(session, row)
            await record_changes(session, row.token)
        self._forget(row.token)
        return secret, row

    async def get(self, identifier: str) -> Key:
        """The key named by a secret or token id; 404 when there is none."""
        async with self._sessions() as session:
            row = await keys_repo.get(session, self.token_of(identifier))
        if row is None:
            raise key_not_found()
        return row

    async def page(self, query: ListQuery) -> tuple[list[Key], int]:
        """One page of keys and the total count for /key/list."""
        filters = keys_repo.KeyFilter(query.user_id, query.team_id, query.key_alias)
        async with self._sessions() as session:
            return await keys_repo.page(session, filters, query.page, query.size)

    async def update(self, req: UpdateKeyRequest) -> Key:
        """Change the settings present in ``req``."""
        token = self.token_of(req.key)
        async with _unique_violation_is_conflict(), self._sessions.begin() as session:
            row = await self._existing(session, token)
            values = settings_columns(req, row.metadata_ or {}, self._clock())
            if "key_alias" in values:
                await self._check_alias(session, values["key_alias"], token)
            await keys_repo.update(session, token, values)
            await record_changes(session, row.token, row.grace_token)
        self._forget(row.token, row.grace_token)
        await self._propagated()
        return row

    async def set_blocked(self, identifier: str, blocked: bool) -> Key:
        """Block or unblock a key."""
        token = self.token_of(identifier)
        async with self._sessions.begin() as session:
            row = await self._existing(session, token)
            await keys_repo.update(session, token, {"blocked": blocked})
            await record_changes(session, row.token, row.grace_token)
        self._forget(row.token, row.grace_token)
        await self._propagated()
        return row

    async def regenerate(self, req: RegenerateKeyRequest) -> tuple[str, Key]:
        """Give a key a new secret; the old one works until the grace period ends (if any)."""
        token = self.token_of(req.key)
        secret = req.new_key or generate_key()
        self._check_not_master("new_key", secret)
        now = self._clock()
        grace_until = now + parse_duration(req.grace_period) if req.grace_period else None
        async with _unique_violation_is_conflict(), self._sessions.begin() as session:
            row = await self._existing(session, token)
            if await keys_repo.find_for_auth(session, hash_key(secret)) is not None:
                raise conflict("new_key: a key with this secret already exists")
            previous_grace = row.grace_token
            values = settings_columns(req, row.metadata_ or {}, now)
            if "key_alias" in values:
                await self._check_alias(session, values["key_alias"], token)
            await keys_repo.update(session, token, values)
            await keys_repo.replace_token(session, row, hash_key(secret), grace_until)
            await record_changes(session, token, previous_grace, row.token)
        self._forget(token, previous_grace, row.token)
        await self._propagated()
        return secret, row

    async def delete(self, req: DeleteKeysRequest) -> list[str]:
        """Delete every key named, or none when one of them does not exist (404)."""
        async with self._sessions.begin() as session:
            if req.key_aliases is not None:
                by_alias = await keys_repo.tokens_for_aliases(session, req.key_aliases)
                missing = [alias for alias in req.key_aliases if alias not in by_alias]
                if missing:
                    raise errors.not_found(
                        "No key has key_alias " + ", ".join(repr(a) for a in missing) + ".",
                        "key_not_found",
                    )
                tokens = list(dict.fromkeys(by_alias[alias] for alias in req.key_aliases))
            else:
                tokens = list(dict.fromkeys(self.token_of(k) for k in req.keys or ()))
                found = await keys_repo.existing_tokens(session, tokens)
                missing_at = [str(i) for i, t in enumerate(tokens) if t not in found]
                if missing_at:
                    raise errors.not_found(
                        "No such key at keys[" + "], keys[".join(missing_at) + "].",
                        "key_not_found",
                    )
            deleted = await keys_repo.delete_tokens(session, tokens)
            await record_changes(session, *(t for pair in deleted for t in pair))
        for token, grace_token in deleted:
            self._forget(token, grace_token)
        await self._propagated()
        return [token for token, _ in deleted]

    @staticmethod
    def token_of(identifier: str) -> str:
        """The token id for a secret or token id; 404 for anything else."""
        token = token_for(identifier)
        if token is None:
            raise key_not_found()
        return token

    def _check_not_master(self, field: str, secret: str) -> None:
        if self._master is not None and self._master.matches(secret):
            raise errors.bad_request(f"{field}: must not be the master key", "invalid_field")

    async def _existing(self, session: AsyncSession, token: str) -> Key:
        row = await keys_repo.get(session, token)
        if row is None:
            raise key_not_found()
        return row

    async def _check_alias(
        self, session: AsyncSession, alias: str | None, token: str | None
    ) -> None:
        if alias is None:
            return
        holder = await keys_repo.get_by_alias(session, alias)
        if holder is not None and holder.token != token:
            raise conflict(f"key_alias: {alias!r} is already used by another key")

    async def _propagated(self) -> None:
        # Other workers read the key-change feed every poll interval: answering after
        # that means the change is in force everywhere once the caller hears back.
        if self._propagation_delay > 0:
            await asyncio.sleep(self._propagation_delay)

    def _forget(self, *tokens: str | None) -> None:
        for token in tokens:
            if token is None:
                continue
            if self._cache is not None:
                self._cache.invalidate(token)
            if self._on_change is not None:
                self._on_change(token)
