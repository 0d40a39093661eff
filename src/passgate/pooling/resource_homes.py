"""Where each resource a deployment created lives, in the database (and a worker's cache).

A create call's answer is recorded before it reaches the caller, so the next call naming
the new id finds its deployment in any worker or instance, and after a restart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from passgate.storage.models import ResourceHome, UTCDateTime, utcnow

_ID_MAX = 512  # the column's width; a longer id is none a provider makes
_CACHED = 10_000  # ids a worker keeps at hand (resources are called about soon after creation)
# SQLite and PostgreSQL both read this upsert; written out, so that a worker loads neither
# dialect's own insert construct (PostgreSQL's would cost a SQLite worker memory)
_UPSERT = text(
    "INSERT INTO resource_homes (provider, resource_id, deployment, created_at) "
    "VALUES (:provider, :resource_id, :deployment, :created_at) "
    "ON CONFLICT (provider, resource_id) DO UPDATE SET deployment = excluded.deployment"
).bindparams(bindparam("created_at", type_=UTCDateTime()))


class StoredResourceHomes:
    """``passgate.proxy.routing.ResourceHomes`` in the gateway's database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], cached: int = _CACHED) -> None:
        self._sessions = sessions
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._cached = cached

    async def find(self, provider: str, resource_ids: Sequence[str]) -> str | None:
        """The deployment of the first of ``resource_ids`` that is known."""
        ids = [i for i in resource_ids if 0 < len(i) <= _ID_MAX]
        for resource_id in ids:
            home = self._cache.get((provider, resource_id))
            if home is not None:
                self._cache.move_to_end((provider, resource_id))
                return home
        if not ids:
            return None
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(ResourceHome.resource_id, ResourceHome.deployment).where(
                        ResourceHome.provider == provider, ResourceHome.resource_id.in_(ids)
                    )
                )
            ).all()
        found = {str(row.resource_id): str(row.deployment) for row in rows}
        for resource_id in ids:
            home = found.get(resource_id)
            if home is not None:
                self._keep(provider, resource_id, home)
                return home
        return None

    async def remember(self, provider: str, resource_ids: Sequence[str], deployment: str) -> None:
        """Record (or move) each of ``resource_ids`` on ``deployment``."""
        ids = list(dict.fromkeys(i for i in resource_ids if 0 < len(i) <= _ID_MAX))
        if not ids:
            return
        now = utcnow()
        rows = [
            {"provider": provider, "resource_id": i, "deployment": deployment, "created_at": now}
            for i in ids
        ]
        async with self._sessions() as session, session.begin():
            await session.execute(_UPSERT, rows)
        for resource_id in ids:
            self._keep(provider, resource_id, deployment)

    def _keep(self, provider: str, resource_id: str, deployment: str) -> None:
        cache = self._cache
        cache[(provider, resource_id)] = deployment
        cache.move_to_end((provider, resource_id))
        if len(cache) > self._cached:
            cache.popitem(last=False)
