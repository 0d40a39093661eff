"""Every counter backend, held to the same behaviour: in-process, real Redis, and the
instance's limits holder over a real Unix socket."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from passgate.limits.backend import (
    AdmitRequest,
    BudgetScope,
    Counters,
    KeyLimits,
    RateState,
    Seed,
    Ticket,
    to_nano,
)
from passgate.limits.holder import CounterHolder
from passgate.limits.instance import InstanceCounters
from passgate.limits.local import LocalCounters
from passgate.limits.redis_backend import RedisCounters, redis_client
from tests.support.services import REDIS_URL, require_redis

T0 = 1_700_000_000.0  # a fixed epoch start for the controllable clock


class Clock:
    """A clock that only moves when told."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Seeds:
    """Database figures handed to the backends when a budget counter is first used."""

    values: dict[str, Seed] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def __call__(self, scope: BudgetScope) -> Seed:
        self.calls.append(scope.counter)
        return self.values.get(scope.counter, Seed(0, None))


Make = Callable[..., Counters]


@pytest.fixture(params=["local", "redis", "instance"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    """Build counters of the parametrized kind; Redis ones get a prefix of their own,
    instance ones a limits holder of their own on a Unix socket."""
    prefix = f"passgate-test-{secrets.token_hex(6)}:"
    clients = []
    holders: list[asyncio.Task[asyncio.Server]] = []
    built: list[InstanceCounters] = []
    if request.param == "redis":
        require_redis()

    def build(clock: Clock, seeds: Seeds | None = None, **options: Any) -> Counters:
        loader = seeds or Seeds()
        window = options.get("window", 60.0)
        if request.param == "local":
            return LocalCounters(loader, clock=clock, window=window)
        if request.param == "instance":
            path = str(tmp_path / f"limits-{len(holders)}.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen()
            holder = CounterHolder(clock=clock, window=window)
            # the client's connection waits in the backlog until the loop runs this
            holders.append(
                asyncio.ensure_future(asyncio.start_unix_server(holder.handle, sock=listener))
            )
            counters = InstanceCounters(path, loader)
            built.append(counters)
            return counters
        client = redis_client(REDIS_URL)
        clients.append(client)
        return RedisCounters(client, loader, prefix=prefix, clock=clock, cooldown=0.0, **options)

    yield build
    for counters in built:
        await counters.stop()
    for task in holders:
        server = await task
        server.close()
    for client in clients:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def budget(counter: str, max_usd: float, period: float | None = None) -> BudgetScope:
    return BudgetScope(
        "user", counter, f"user '{counter}'", f"user:{counter}", to_nano(max_usd), period
    )


async def test_budget_holds_exactly_under_concurrency(make: Make) -> None:
    counters = make(Clock())
    scope = budget("u1", 0.01)
    cost = to_nano(0.001)
    request = AdmitRequest(budgets=(scope,), amount=cost)

    results = await asyncio.gather(*(counters.admit(request) for _ in range(200)))

    tickets = [r.ticket for r in results if r.ticket is not None]
    assert len(tickets) == 10
    refused = [r for r in results if r.ticket is None]
    assert {r.reason for r in refused} == {"budget"}
    assert all(r.scope == scope for r in refused)
    await asyncio.gather(*(counters.finish(t, 0, cost) for t in tickets))
    state = await counters.budget_state(scope)
    assert state is not None
    assert (state.spent, state.reserved) == (10 * cost, 0)
    assert (await counters.admit(request)).reason == "budget"


async def test_a_reservation_is_replaced_by_the_real_cost(make: Make) -> None:
    counters = make(Clock())
    scope = budget("u2", 1.0)
    first = await counters.admit(AdmitRequest(budgets=(scope,), amount=to_nano(0.6)))
    assert first.ticket is not None and first.ticket.amount == to_nano(0.6)
    # 0.4 is unreserved: the second call is admitted and reserves only that
    second = await counters.admit(AdmitRequest(budgets=(scope,), amount=to_nano(0.6)))
    assert second.ticket is not None and second.ticket.amount == to_nano(0.4)
    # nothing is unreserved: refused while both are in flight
    third = await counters.admit(AdmitRequest(budgets=(scope,), amount=to_nano(0.6)))
    assert third.reason == "budget"
    assert third.reserved == to_nano(1.0)
    await counters.finish(first.ticket, 0, to_nano(0.1))
    fourth = await counters.admit(AdmitRequest(budgets=(scope,), amount=to_nano(0.6)))
    assert fourth.ticket is not None and fourth.ticket.amount == to_nano(0.5)
    state = await counters.budget_state(scope)
    assert state is not None
    assert (state.spent, state.reserved) == (to_nano(0.1), to_nano(0.9))
    await counters.finish(second.ticket, 0, to_nano(0.1))
    await counters.finish(fourth.ticket, 0, to_nano(0.1))
    state = await counters.budget_state(scope)
    assert state is not None
    assert (state.spent, state.reserved) == (to_nano(0.3), 0)


async def test_the_reservation_is_what_the_tightest_scope_has_unreserved(make: Make) -> None:
    counters = make(Clock())
    roomy, tight = budget("roomy", 10.0), budget("tight", 0.5)
    admitted = await counters.admit(AdmitRequest(budgets=(roomy, tight), amount=to_nano(1.0)))
    assert admitted.ticket is not None and admitted.ticket.amount == to_nano(0.5)
    for scope in (roomy, tight):
        state = await counters.budget_state(scope)
        assert state is not None and state.reserved == to_nano(0.5)
    refused = await counters.admit(AdmitRequest(budgets=(roomy, tight), amount=to_nano(1.0)))
    assert refused.reason == "budget" and refused.scope == tight
    state = await counters.budget_state(roomy)
    assert state is not None and state.reserved == to_nano(0.5)  # refused: took nothing
    await counters.finish(admitted.ticket, 0, to_nano(0.2))
    state = await counters.budget_state(tight)
    assert state is not None and (state.spent, state.reserved) == (to_nano(0.2), 0)


async def test_a_spent_budget_refuses_even_a_zero_estimate(make: Make) -> None:
    seeds = Seeds({"user:full": Seed(to_nano(2.0), None)})
    counters = make(Clock(), seeds)
    refused = await counters.admit(AdmitRequest(budgets=(budget("full", 2.0),), amount=0))
    assert refused.reason == "budget"
    assert refused.spent == to_nano(2.0)
    roomy = await counters.admit(AdmitRequest(budgets=(budget("fresh", 2.0),), amount=0))
    assert roomy.ticket is not None


async def test_counters_are_seeded_once_from_the_database(make: Make) -> None:
    seeds = Seeds({"user:seeded": Seed(to_nano(0.75), None)})
    counters = make(Clock(), seeds)
    scope = budget("seeded", 1.0)
    ok = await counters.admit(AdmitRequest(budgets=(scope,), amount=to_nano(0.25)))
    assert ok.ticket is not None
    refused = await counters.admit(AdmitRequest(budgets=(scope,), amount=to_nano(0.01)))
    assert refused.reason == "budget"
    assert seeds.calls == ["user:seeded"]


async def test_budget_period_resets_with_the_clock(make: Make) -> None:
    clock = Clock()
    seeds = Seeds({"user:monthly": Seed(to_nano(1.0), T0 + 30)})
    counters = make(clock, seeds)
    scope = budget("monthly", 1.0, period=60.0)
    request = AdmitRequest(budgets=(scope,), amount=to_nano(0.5))
    refused = await counters.admit(request)
    assert refused.reason == "budget"
    assert refused.retry_after == pytest.approx(30.0)

    clock.advance(30.0)  # the seeded reset time: a new period starts
    ok = await counters.admit(request)
    assert ok.ticket is not None
    state = await counters.budget_state(scope)
    assert state is not None
    assert (state.spent, state.reserved, state.reset_at) == (0, to_nano(0.5), T0 + 90)
    await counters.finish(ok.ticket, 0, to_nano(1.0))

    clock.advance(59.0)
    assert (await counters.admit(request)).reason == "budget"
    clock.advance(1.0 + 120.0)  # two whole periods later: the grid is kept
    ok = await counters.admit(request)
    assert ok.ticket is not None
    state = await counters.budget_state(scope)
    assert state is not None
    assert state.reset_at == T0 + 270


async def test_rpm_is_a_sliding_window(make: Make) -> None:
    clock = Clock()
    counters = make(clock)
    key = KeyLimits("k-rpm", rpm=3)
    request = AdmitRequest(key=key)
    for _ in range(2):
        assert (await counters.admit(request)).ticket is not None
    clock.advance(20.0)
    third = await counters.admit(request)
    assert third.ticket is not None
    assert third.requests_used == 2
    refused = await counters.admit(request)
    assert refused.reason == "rpm"
    assert refused.requests_used == 3
    assert refused.retry_after == pytest.approx(40.0)
    clock.advance(40.0)  # the first two leave the window, the third stays
    assert (await counters.admit(request)).ticket is not None
    assert (await counters.admit(request)).ticket is not None
    assert (await counters.admit(request)).reason == "rpm"


async def test_rpm_holds_exactly_under_concurrency(make: Make) -> None:
    counters = make(Clock())
    request = AdmitRequest(key=KeyLimits("k-burst", rpm=30))
    results = await asyncio.gather(*(counters.admit(request) for _ in range(100)))
    assert sum(r.ticket is not None for r in results) == 30
    assert {r.reason for r in results if r.ticket is None} == {"rpm"}


async def test_tpm_counts_real_usage_per_window(make: Make) -> None:
    clock = Clock()
    counters = make(clock)
    request = AdmitRequest(key=KeyLimits("k-tpm", tpm=100))
    first = await counters.admit(request)
    assert first.ticket is not None
    await counters.finish(first.ticket, 80, 0)
    second = await counters.admit(request)  # 80 < 100: still allowed
    assert second.ticket is not None
    assert second.tokens_used == 80
    await counters.finish(second.ticket, 30, 0)
    refused = await counters.admit(request)
    assert refused.reason == "tpm"
    assert refused.tokens_used == 110
    assert 0 < refused.retry_after <= 60.0
    clock.advance(refused.retry_after)  # the next window starts empty
    again = await counters.admit(request)
    assert again.ticket is not None
    assert again.tokens_used == 0


async def test_parallel_slots_are_acquired_and_released(make: Make) -> None:
    counters = make(Clock())
    request = AdmitRequest(key=KeyLimits("k-par", parallel=2))
    one, two = await counters.admit(request), await counters.admit(request)
    assert one.ticket is not None and two.ticket is not None
    assert (await counters.admit(request)).reason == "parallel"
    await counters.finish(one.ticket, 0, 0)
    three = await counters.admit(request)
    assert three.ticket is not None
    assert (await counters.admit(request)).reason == "parallel"


async def test_a_refused_call_takes_nothing(make: Make) -> None:
    counters = make(Clock(), Seeds({"user:nothing": Seed(to_nano(0.001), None)}))
    key = KeyLimits("k-all", rpm=5, parallel=1)
    scope = budget("nothing", 0.001)
    refused = await counters.admit(AdmitRequest(key, (scope,), to_nano(1.0)))
    assert refused.reason == "budget"
    # neither the rpm window nor the parallel slot was taken by the refused call
    ok = await counters.admit(AdmitRequest(key, (), 0))
    assert ok.ticket is not None
    assert ok.requests_used == 0


async def test_finish_without_cost_releases_the_reservation(make: Make) -> None:
    counters = make(Clock())
    scope = budget("released", 1.0)
    admitted = await counters.admit(AdmitRequest(budgets=(scope,), amount=to_nano(0.9)))
    assert isinstance(admitted.ticket, Ticket)
    await counters.finish(admitted.ticket, 0, 0)
    state = await counters.budget_state(scope)
    assert state is not None
    assert (state.spent, state.reserved) == (0, 0)


async def test_rate_state_reads_what_admission_counts(make: Make) -> None:
    clock = Clock()
    counters = make(clock)
    key = KeyLimits("k-state", rpm=5, tpm=1000, parallel=3)
    assert await counters.rate_state(key.counter) == RateState(0, 0, 0)
    first = await counters.admit(AdmitRequest(key=key))
    clock.advance(30.0)
    second = await counters.admit(AdmitRequest(key=key))
    assert first.ticket is not None and second.ticket is not None
    assert await counters.rate_state(key.counter) == RateState(2, 0, 2)
    await counters.finish(first.ticket, 120, 0)
    assert await counters.rate_state(key.counter) == RateState(2, 120, 1)
    clock.advance(30.0)  # the first request leaves the sliding window, a new tpm window starts
    assert await counters.rate_state(key.counter) == RateState(1, 0, 1)
    await counters.finish(second.ticket, 0, 0)
    assert await counters.rate_state(key.counter) == RateState(1, 0, 0)
    # reading changed nothing: admission still sees the one request in the window
    third = await counters.admit(AdmitRequest(key=key))
    assert third.requests_used == 1
    assert await counters.rate_state("k-never-used") == RateState(0, 0, 0)
