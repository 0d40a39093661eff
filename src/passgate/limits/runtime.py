"""Budgets and rate limits for one gateway, built from settings.

With ``REDIS_URL`` the counters live in Redis (shared by every instance) and key
changes are broadcast over Redis pub/sub; without it, in the instance's limits process
when the server runs several workers, else in this process. Either way a
background task starts a new budget period in the database when one ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from passgate.accounting.pricing import Catalogs
from passgate.config import Settings
from passgate.limits.backend import Counters, ScopeKind
from passgate.limits.directory import BudgetDirectory
from passgate.limits.estimate import Estimator
from passgate.limits.guard import BypassCallback, LimitsGuard
from passgate.limits.instance import InstanceCounters
from passgate.limits.local import LocalCounters
from passgate.limits.store import SqlBudgetStore
from passgate.tasks import cancel_and_wait

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from passgate.limits.events import KeyEvents

log = logging.getLogger("passgate.limits")

RESET_INTERVAL = 10.0  # seconds between checks for budget periods that ended


def limits_warning(settings: Settings) -> str | None:
    """The start-up warning when several workers were told to keep their own counters."""
    workers = settings.workers or os.cpu_count() or 1
    if workers <= 1 or settings.redis_url or settings.limits_process:
        return None
    return (
        f"{workers} workers, no REDIS_URL and PASSGATE_LIMITS_PROCESS=false: rate limits "
        "and budgets are enforced per worker (each worker may let through up to the full "
        "limit)."
    )


class Limits:
    """The limits stage (``guard``) with the background parts it needs; a gateway Component."""

    def __init__(
        self,
        guard: LimitsGuard,
        counters: Counters,
        directory: BudgetDirectory,
        store: SqlBudgetStore,
        events: KeyEvents | None = None,
        client: Redis | None = None,
        clock: Callable[[], float] = time.time,
        reset_interval: float = RESET_INTERVAL,
    ) -> None:
        self.guard = guard
        self.counters = counters
        self.directory = directory
        self.events = events
        self._store = store
        self._client = client
        self._clock = clock
        self._reset_interval = reset_interval
        self._resetter: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start counter upkeep, the key-change listener and the budget resetter."""
        await self.counters.start()
        if self.events is not None:
            await self.events.start()
        if self._resetter is None:
            self._resetter = asyncio.get_running_loop().create_task(self._reset_loop())

    async def stop(self) -> None:
        """Stop everything started, then close the Redis connections."""
        await cancel_and_wait(self._resetter)
        self._resetter = None
        if self.events is not None:
            await self.events.stop()
        await self.counters.stop()
        if self._client is not None:
            await self._client.aclose()

    async def key_changed(self, token: str) -> None:
        """Tell every instance to drop its cached copy of a key (no-op without Redis)."""
        if self.events is not None:
            await self.events.publish(token)

    def key_changed_soon(self, token: str) -> None:
        """``key_changed`` from synchronous code, such as a key cache's invalidate."""
        if self.events is not None:
            self.events.publish_soon(token)

    async def budget_changed(self, kind: ScopeKind, id: str) -> None:
        """A user's, team's or end user's budget changed: drop it here and everywhere."""
        self.directory.invalidate(kind, id)
        if self.events is not None:
            await self.events.publish_scope(kind, id)

    async def reset_budgets(self) -> int:
        """Start a new period for every budget whose period ended; returns how many."""
        return await self._store.reset_due(self._clock())

    async def _reset_loop(self) -> None:
        while True:
            try:
                await self.reset_budgets()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("budget reset check failed (%s); retrying", type(exc).__name__)
            await asyncio.sleep(self._reset_interval)


def build_limits(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    catalogs: Catalogs,
    *,
    on_key_invalidated: Callable[[str], object] | None = None,
    on_resync: Callable[[], object] | None = None,
    on_bypass: BypassCallback | None = None,
    clock: Callable[[], float] = time.time,
    prefix: str = "passgate:",
    limits_socket: str | None = None,
) -> Limits:
    """Wire budgets and rate limits for these settings; with ``limits_socket`` (and no
    Redis) the counters are the instance's limits process's."""
    store = SqlBudgetStore(sessions)
    directory = BudgetDirectory(store, ttl=settings.key_cache_ttl)
    counters: Counters
    events = client = None
    if settings.redis_url:
        # Imported only with REDIS_URL set: redis.asyncio (with the OpenTelemetry metrics
        # SDK it loads when installed) is large, and every worker would hold it for nothing
        # without Redis (figures: docs/performance.md).
        from passgate.limits.events import KeyEvents
        from passgate.limits.redis_backend import RedisCounters, redis_client

        client = redis_client(settings.redis_url)
        counters = RedisCounters(client, directory.seed, prefix=prefix, clock=clock)

        def resync() -> None:
            directory.clear()
            if on_resync is not None:
                on_resync()

        events = KeyEvents(
            client,
            on_key=on_key_invalidated or (lambda _token: None),
            on_scope=directory.invalidate,
            on_resync=resync,
            channel=prefix + "invalidate",
        )
    elif limits_socket:
        counters = InstanceCounters(limits_socket, directory.seed)
    else:
        counters = LocalCounters(directory.seed, clock=clock)
    guard = LimitsGuard(
        counters,
        directory,
        Estimator(catalogs.lookup, settings.budget_estimate_usd, settings.budget_output_tokens),
        settings.redis_fail_mode,
        on_bypass,
    )
    return Limits(guard, counters, directory, store, events, client, clock)
