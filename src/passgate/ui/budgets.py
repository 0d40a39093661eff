"""A key's budgets as the limits hold them right now: spent and reserved by calls in flight.

Read from the same counters the limits check on every call (``Counters.budget_state``).
With Redis they are the whole deployment's; without it, the counters of the process
serving the page (each worker counts its own calls in flight).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from passgate.auth.key_state import principal_from_key
from passgate.limits.backend import LimitsUnavailable, to_usd
from passgate.limits.runtime import Limits
from passgate.storage.models import Key


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget a key's calls count against."""

    label: str
    max_budget: float
    spent: float | None  # None: no call counted against it since the process started
    reserved: float | None
    resets: datetime | None

    @property
    def left(self) -> float | None:
        """What is left once the calls in flight settle (never below zero)."""
        if self.spent is None:
            return None
        return max(self.max_budget - self.spent - (self.reserved or 0.0), 0.0)


async def budget_lines(limits: Limits, row: Key) -> list[BudgetLine] | None:
    """The key's budgets (its own, its user's, team's, end user's); None when the counter
    store cannot be read."""
    try:
        scopes = await limits.directory.scopes(principal_from_key(row), row.end_user_id)
        lines = []
        for scope in scopes:
            state = await limits.counters.budget_state(scope)
            lines.append(
                BudgetLine(
                    label=scope.label,
                    max_budget=to_usd(scope.max_budget),
                    spent=None if state is None else to_usd(state.spent),
                    reserved=None if state is None else to_usd(state.reserved),
                    resets=None
                    if state is None or state.reset_at is None
                    else datetime.fromtimestamp(state.reset_at, UTC),
                )
            )
    except (LimitsUnavailable, OSError):
        return None
    return lines
