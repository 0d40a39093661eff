"""Which budgets a call counts against, without a database round trip per call.

The key's own budget comes with the principal (from the key cache). The budgets
of its user and team, and of the end user named by the request, are read from
the database and kept for ``ttl`` seconds (the key cache's TTL: a changed budget
applies within that time everywhere, at once on the instance that changed it).
If the database is away, an expired entry is used rather than none.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from passgate.limits.backend import BudgetScope, LimitsUnavailable, ScopeKind, Seed, to_nano
from passgate.limits.periods import period_seconds
from passgate.limits.store import BudgetRow
from passgate.principal import Principal

log = logging.getLogger("passgate.limits")

_LABELS: dict[ScopeKind, str] = {"user": "user", "team": "team", "end_user": "end user"}


class BudgetSource(Protocol):
    async def load(self, kind: ScopeKind, id: str) -> BudgetRow | None:
        """The budget columns of one scope, or None; raises ``LimitsUnavailable``."""
        ...


def key_counter(token: str) -> str:
    """The counter id of a key: derived from its hash id so Redis never holds the hash."""
    digest = hashlib.blake2b(token.encode(), digest_size=12, person=b"passgate-limit")
    return digest.hexdigest()


def _period(duration: str | None) -> float | None:
    if duration is None:
        return None
    try:
        return period_seconds(duration)
    except ValueError:
        log.warning("ignoring an unreadable budget_duration")
        return None


class BudgetDirectory:
    """Resolves the budget scopes of a call; also seeds counters from the database."""

    def __init__(
        self,
        source: BudgetSource,
        ttl: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._monotonic = monotonic
        self._max_entries = max_entries
        self._rows: dict[tuple[ScopeKind, str], tuple[float, BudgetRow | None]] = {}
        self._loading: dict[tuple[ScopeKind, str], asyncio.Task[BudgetRow | None]] = {}

    async def scopes(
        self, principal: Principal | None, end_user: str | None
    ) -> tuple[BudgetScope, ...]:
        """Every budget the call counts against: key, user, team, end user (those that have one)."""
        scopes: list[BudgetScope] = []
        if principal is not None and principal.kind == "virtual" and principal.token:
            if principal.max_budget is not None:
                label = f"key '{principal.key_alias}'" if principal.key_alias else "this key"
                scopes.append(
                    BudgetScope(
                        "key",
                        principal.token,
                        label,
                        "key:" + key_counter(principal.token),
                        to_nano(principal.max_budget),
                        _period(principal.budget_duration),
                    )
                )
            if principal.user_id:
                await self._add(scopes, "user", principal.user_id)
            if principal.team_id:
                await self._add(scopes, "team", principal.team_id)
        if end_user:
            await self._add(scopes, "end_user", end_user)
        return tuple(scopes)

    async def end_user_blocked(self, end_user: str) -> bool:
        """True when the end user was blocked (``/customer/update``); read from the cache."""
        row = await self._row("end_user", end_user)
        return row is not None and row.blocked

    async def seed(self, scope: BudgetScope) -> Seed:
        """The counter's starting point: the database's spend and reset time, read fresh."""
        row = await self._source.load(scope.kind, scope.id)
        if row is None:
            return Seed(0, None)
        return Seed(to_nano(row.spend), row.budget_reset_at)

    def invalidate(self, kind: ScopeKind, id: str) -> None:
        """Forget a cached budget (it was changed here or on another instance)."""
        self._rows.pop((kind, id), None)

    def clear(self) -> None:
        """Forget every cached budget."""
        self._rows.clear()

    async def _add(self, scopes: list[BudgetScope], kind: ScopeKind, id: str) -> None:
        row = await self._row(kind, id)
        if row is not None and row.max_budget is not None:
            scopes.append(
                BudgetScope(
                    kind,
                    id,
                    f"{_LABELS[kind]} '{id}'",
                    f"{kind}:{id}",
                    to_nano(row.max_budget),
                    _period(row.budget_duration),
                )
            )

    async def _row(self, kind: ScopeKind, id: str) -> BudgetRow | None:
        entry = self._rows.get((kind, id))
        now = self._monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        task = self._loading.get((kind, id))
        if task is None:
            # one load per scope however many calls are waiting for it
            task = asyncio.get_running_loop().create_task(self._source.load(kind, id))
            self._loading[(kind, id)] = task
            task.add_done_callback(lambda _: self._loading.pop((kind, id), None))
        try:
            row = await asyncio.shield(task)
        except LimitsUnavailable:
            if entry is not None:
                return entry[1]
            raise
        if len(self._rows) >= self._max_entries:
            self._rows.clear()
        self._rows[(kind, id)] = (self._monotonic() + self._ttl, row)
        return row
