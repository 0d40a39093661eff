"""Budgets as the database records them: read to seed counters, and reset when a period ends.

The database stays the record of truth for spend (the spend writer adds every
call's cost to it); counters are seeded from it when they have no state, and
``reset_due`` zeroes the spend column of every budget whose period ended and
moves its ``budget_reset_at`` on, so info routes show the current period.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from passgate.limits.backend import LimitsUnavailable, ScopeKind
from passgate.limits.periods import next_reset, period_seconds
from passgate.storage.models import EndUser, Key, Team, User

log = logging.getLogger("passgate.limits")

_TABLES: dict[ScopeKind, Any] = {
    "key": (Key, Key.token),
    "user": (User, User.user_id),
    "team": (Team, Team.team_id),
    "end_user": (EndUser, EndUser.end_user_id),
}


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """One scope's budget columns."""

    max_budget: float | None
    budget_duration: str | None
    spend: float
    budget_reset_at: float | None  # epoch seconds
    blocked: bool = False  # end users only: a blocked end user may not make calls


def to_datetime(epoch: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch, UTC)


class SqlBudgetStore:
    """Reads and resets budget columns through SQLAlchemy."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def load(self, kind: ScopeKind, id: str) -> BudgetRow | None:
        """The budget columns of one key, user, team or end user; None when absent."""
        model, pk = _TABLES[kind]
        columns = [model.max_budget, model.budget_duration, model.spend, model.budget_reset_at]
        if kind == "end_user":
            columns.append(model.blocked)
        query = select(*columns).where(pk == id)
        try:
            async with self._sessions() as session:
                row = (await session.execute(query)).first()
        except (SQLAlchemyError, OSError) as exc:
            raise LimitsUnavailable("the database is unreachable") from exc
        if row is None:
            return None
        reset_at = row.budget_reset_at.timestamp() if row.budget_reset_at else None
        blocked = bool(row.blocked) if kind == "end_user" else False
        return BudgetRow(row.max_budget, row.budget_duration, row.spend or 0.0, reset_at, blocked)

    async def reset_due(self, now: float) -> int:
        """Start a new period for every budget whose reset time has come; returns how many."""
        done = 0
        async with self._sessions() as session:
            for model, pk in _TABLES.values():
                due = select(pk, model.budget_duration, model.budget_reset_at).where(
                    model.budget_duration.is_not(None),
                    or_(model.budget_reset_at.is_(None), model.budget_reset_at <= to_datetime(now)),
                )
                for row_id, duration, reset_at in (await session.execute(due)).all():
                    try:
                        period = period_seconds(duration)
                    except ValueError:
                        continue
                    change: dict[str, Any]
                    if reset_at is None:
                        change = {"budget_reset_at": to_datetime(now + period)}
                    else:
                        later = next_reset(reset_at.timestamp(), period, now)
                        change = {"spend": 0.0, "budget_reset_at": to_datetime(later)}
                    # the reset_at condition makes a concurrent reset by another instance a no-op
                    same = (
                        model.budget_reset_at.is_(None)
                        if reset_at is None
                        else model.budget_reset_at == reset_at
                    )
                    result = await session.execute(
                        update(model).where(pk == row_id, same).values(**change),
                        execution_options={"synchronize_session": False},
                    )
                    done += _rowcount(result)
            await session.commit()
        return done


def _rowcount(result: Any) -> int:
    count = getattr(result, "rowcount", 0)
    return count if isinstance(count, int) and count > 0 else 0
