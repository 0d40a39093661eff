"""Counters in one process's memory.

Every check-and-take runs without an ``await`` in between, so on one event loop
it is atomic by construction. A gateway with one worker keeps them in that worker;
with several workers and no Redis, the instance's limits process keeps them for all
of its workers (``holder``), which then reach them through ``InstanceCounters``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from passgate.limits.backend import (
    Admission,
    AdmitRequest,
    BudgetScope,
    BudgetState,
    RateState,
    Seed,
    SeedLoader,
    SharedSeeds,
    Ticket,
)
from passgate.limits.periods import next_reset


@dataclass(slots=True)
class _Budget:
    spent: int
    reserved: int
    reset_at: float | None


class LocalCounters:
    """Counters kept in this process's memory."""

    def __init__(
        self,
        seed_loader: SeedLoader,
        clock: Callable[[], float] = time.time,
        window: float = 60.0,
    ) -> None:
        self._seed = SharedSeeds(seed_loader)
        self._clock = clock
        self._window = window
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, tuple[int, int]] = {}  # counter -> (window index, tokens)
        self._parallel: dict[str, int] = {}
        self._budgets: dict[str, _Budget] = {}
        self._ids = itertools.count()

    async def start(self) -> None:
        """Nothing to do: in-process counters need no upkeep."""

    async def stop(self) -> None:
        """Nothing to release."""

    def unseeded(self, budgets: tuple[BudgetScope, ...]) -> list[int]:
        """The positions of the scopes that have no counter yet."""
        return [i for i, scope in enumerate(budgets) if scope.counter not in self._budgets]

    def seed(self, counter: str, seed: Seed) -> None:
        """Start a counter from ``seed`` unless it has one already (the first seed wins)."""
        self._budgets.setdefault(counter, _Budget(seed.spend, 0, seed.reset_at))

    async def admit(self, request: AdmitRequest) -> Admission:
        """Check every limit and take all it needs, or nothing."""
        for scope in request.budgets:
            if scope.counter not in self._budgets:
                seed = await self._seed(scope)
                # another call may have seeded it while we awaited: keep the first
                self._budgets.setdefault(scope.counter, _Budget(seed.spend, 0, seed.reset_at))
        # from here on, no await: the check and the take are one atomic step
        now = self._clock()
        key = request.key
        used_requests = used_tokens = None
        if key is not None:
            if key.rpm is not None:
                entries = self._request_log(key.counter, now)
                used_requests = len(entries)
                if used_requests >= key.rpm:
                    retry = entries[0] + self._window - now if entries else self._window
                    tokens = None if key.tpm is None else self._tokens_used(key.counter, now)
                    return Admission(None, "rpm", used_requests, tokens, retry_after=retry)
            if key.tpm is not None:
                used_tokens = self._tokens_used(key.counter, now)
                if used_tokens >= key.tpm:
                    retry = self._window - now % self._window
                    return Admission(None, "tpm", used_requests, used_tokens, retry_after=retry)
            if key.parallel is not None and self._parallel.get(key.counter, 0) >= key.parallel:
                return Admission(None, "parallel", used_requests, used_tokens, retry_after=1.0)
        amount = request.amount
        for scope in request.budgets:
            state = self._current(scope, now)
            total = state.spent + state.reserved
            if total >= scope.max_budget:
                retry = 0.0 if state.reset_at is None else state.reset_at - now
                return Admission(
                    None,
                    "budget",
                    used_requests,
                    used_tokens,
                    retry_after=retry,
                    scope=scope,
                    spent=state.spent,
                    reserved=state.reserved,
                )
            amount = min(amount, scope.max_budget - total)
        if key is not None:
            if key.rpm is not None:
                self._requests[key.counter].append(now)
            if key.parallel is not None:
                self._parallel[key.counter] = self._parallel.get(key.counter, 0) + 1
        for scope in request.budgets:
            self._budgets[scope.counter].reserved += amount
        ticket = Ticket(str(next(self._ids)), key, request.budgets, amount)
        return Admission(ticket, None, used_requests, used_tokens)

    async def finish(self, ticket: Ticket, tokens: int, cost: int) -> None:
        """Release the slot, count the tokens, replace the reservation by the cost."""
        now = self._clock()
        key = ticket.key
        if key is not None:
            if key.tpm is not None and tokens > 0:
                index, used = self._tokens.get(key.counter, (self._index(now), 0))
                if index != self._index(now):
                    index, used = self._index(now), 0
                self._tokens[key.counter] = (index, used + tokens)
            if key.parallel is not None:
                held = self._parallel.get(key.counter, 0) - 1
                if held > 0:
                    self._parallel[key.counter] = held
                else:
                    self._parallel.pop(key.counter, None)
        for scope in ticket.budgets:
            state = self._budgets.get(scope.counter)
            if state is None:
                continue
            state.reserved = max(0, state.reserved - ticket.amount)
            if cost > 0:
                self._current(scope, now).spent += cost

    async def budget_state(self, scope: BudgetScope) -> BudgetState | None:
        """The counter of one budget scope, or None before its first use."""
        state = self._budgets.get(scope.counter)
        if state is None:
            return None
        state = self._current(scope, self._clock())
        return BudgetState(state.spent, state.reserved, state.reset_at)

    async def rate_state(self, counter: str) -> RateState:
        """The key's counters now, read without trimming or creating anything."""
        now = self._clock()
        horizon = now - self._window
        # the log is in time order and holds at most rpm entries
        requests = sum(1 for at in self._requests.get(counter, ()) if at > horizon)
        return RateState(requests, self._tokens_used(counter, now), self._parallel.get(counter, 0))

    def _index(self, now: float) -> int:
        return math.floor(now / self._window)

    def _request_log(self, counter: str, now: float) -> deque[float]:
        entries = self._requests.setdefault(counter, deque())
        horizon = now - self._window
        while entries and entries[0] <= horizon:
            entries.popleft()
        return entries

    def _tokens_used(self, counter: str, now: float) -> int:
        index, used = self._tokens.get(counter, (0, 0))
        return used if index == self._index(now) else 0

    def _current(self, scope: BudgetScope, now: float) -> _Budget:
        """The scope's counter with any period reset that fell due applied."""
        state = self._budgets[scope.counter]
        if scope.period is not None:
            if state.reset_at is None:
                state.reset_at = now + scope.period
            elif now >= state.reset_at:
                state.reset_at = next_reset(state.reset_at, scope.period, now)
                state.spent = 0
        return state
