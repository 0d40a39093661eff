"""What a counter backend does, whichever store holds the counters.

A backend keeps, per key, a sliding request log (rpm), a fixed-window token
counter (tpm) and a parallel-request gauge; per budget scope (key, user, team,
end user), the spend of the current period and the amount reserved by calls in
flight. ``admit`` checks every limit and takes everything it needs in one atomic
step, or takes nothing; ``finish`` gives back what ``admit`` took.

A call is admitted on a budget while some of it is unreserved (spend + reserved <
max_budget), and reserves ``min(estimate, unreserved)`` (the smallest unreserved
amount of its scopes). So a burst overspends by at most one call's real cost over
its reservation, and the last part of a budget still serves a call on its own.

Money is counted in integer nano-dollars (1e-9 USD) so that comparisons are
exact: ten reservations of 0.001 fill a budget of 0.01, never 0.010000000000000002.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

NANO = 1_000_000_000

ScopeKind = Literal["key", "user", "team", "end_user"]
RefusalReason = Literal["rpm", "tpm", "parallel", "budget"]


def to_nano(usd: float) -> int:
    """USD to integer nano-dollars (rounded to the nearest)."""
    return round(usd * NANO)


def to_usd(nano: int) -> float:
    """Integer nano-dollars to USD."""
    return nano / NANO


class LimitsUnavailable(Exception):
    """The counter store (Redis) or the budget source (the database) cannot be reached."""


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """The rate limits of one key; None means no limit of that kind."""

    counter: str  # counter id derived from the key's hash id; never the hash itself
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """One budget a call counts against."""

    kind: ScopeKind
    id: str = field(repr=False)  # database id: the key's hash id for keys, so never shown
    label: str  # how messages name the scope, e.g. "user 'alice'"
    counter: str  # counter id
    max_budget: int  # nano-dollars
    period: float | None = None  # seconds between resets, None for a lifetime budget


@dataclass(frozen=True, slots=True)
class Seed:
    """Where a budget counter starts when the store has none: the database's figures."""

    spend: int  # nano-dollars spent in the current period
    reset_at: float | None  # epoch seconds of the next reset


SeedLoader = Callable[[BudgetScope], Awaitable[Seed]]


class SharedSeeds:
    """A seed loader that reads each counter's seed once however many calls wait for it."""

    def __init__(self, loader: SeedLoader) -> None:
        self._loader = loader
        self._loading: dict[str, asyncio.Future[Seed]] = {}

    async def __call__(self, scope: BudgetScope) -> Seed:
        task = self._loading.get(scope.counter)
        if task is None:
            task = asyncio.ensure_future(self._loader(scope))
            self._loading[scope.counter] = task
            task.add_done_callback(lambda _: self._loading.pop(scope.counter, None))
        # a waiter that is cancelled (client gone) must not cancel the shared load
        return await asyncio.shield(task)


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    """Everything one call must pass: key rate limits, budgets, and the amount to reserve."""

    key: KeyLimits | None = None
    budgets: tuple[BudgetScope, ...] = ()
    amount: int = 0  # nano-dollars to reserve on every budget scope (at most what is unreserved)


@dataclass(frozen=True, slots=True)
class Ticket:
    """What an admitted call holds until ``finish``."""

    id: str
    key: KeyLimits | None
    budgets: tuple[BudgetScope, ...]
    amount: int  # nano-dollars reserved on every budget scope


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to ``admit``: a ticket, or the reason for refusing."""

    ticket: Ticket | None
    reason: RefusalReason | None = None
    requests_used: int | None = None  # in the rpm window, before this call
    tokens_used: int | None = None  # in the tpm window
    retry_after: float = 0.0  # seconds until the refused limit frees up
    scope: BudgetScope | None = None  # the budget that refused
    spent: int = 0  # that budget's spend in the period, nano-dollars
    reserved: int = 0  # that budget's reservations in flight, nano-dollars


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget counter as the store holds it (for tests and diagnostics)."""

    spent: int
    reserved: int
    reset_at: float | None


@dataclass(frozen=True, slots=True)
class RateState:
    """A key's rate counters as the store holds them now (for the UI and diagnostics)."""

    requests: int  # admitted in the sliding rpm window that ends now
    tokens: int  # counted in the current fixed tpm window
    parallel: int  # slots held by calls in flight


class Counters(Protocol):
    """A counter store: in-process (``LocalCounters``) or shared (``RedisCounters``)."""

    async def admit(self, request: AdmitRequest) -> Admission:
        """Check every limit and take all it needs atomically, or nothing."""
        ...

    async def finish(self, ticket: Ticket, tokens: int, cost: int) -> None:
        """Release the ticket's slot, count its tokens, replace its reservation by the cost."""
        ...

    async def budget_state(self, scope: BudgetScope) -> BudgetState | None:
        """The counter of one budget scope, or None when the store has none yet."""
        ...

    async def rate_state(self, counter: str) -> RateState:
        """A key's rate counters now (zero where it has none); reads only, creates nothing."""
        ...

    async def start(self) -> None:
        """Begin background upkeep (lease refresh, retries)."""
        ...

    async def stop(self) -> None:
        """Stop upkeep and release connections."""
        ...
