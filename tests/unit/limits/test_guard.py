"""The limits stage as the relay sees it: admit before forwarding, finished afterwards."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import pytest

from passgate.accounting.pricing import Price
from passgate.errors import GatewayError
from passgate.exchange import Exchange, RequestInfo, Usage
from passgate.limits.backend import LimitsUnavailable, ScopeKind, Ticket, to_nano
from passgate.limits.directory import BudgetDirectory, key_counter
from passgate.limits.estimate import Estimator
from passgate.limits.guard import TICKET, LimitsGuard
from passgate.limits.local import LocalCounters
from passgate.limits.store import BudgetRow
from passgate.principal import MASTER, Principal
from tests.unit.limits.test_backends import Clock

TOKEN = "f" * 64  # a key's hash id: must never appear in a message
PRICE = Price(input_per_token=1e-6, output_per_token=2e-6)


def ticket_of(ex: Exchange) -> Ticket:
    ticket = TICKET.get(ex)
    assert ticket is not None
    return ticket


async def test_without_max_tokens_the_output_allowance_is_reserved() -> None:
    # the catalog's max output for the model, capped by the setting; the setting alone
    # when the catalog names none
    bounded = replace(PRICE, max_output_tokens=300)
    by_name = {"bounded": bounded, "m": PRICE}

    def priced(_provider: str, model: str | None) -> Price | None:
        return by_name.get(model or "")

    estimate = Estimator(priced, output_tokens=1000)
    call = exchange(None, model="m")
    call.bytes_in = 40  # 10 input tokens
    assert estimate(call) == to_nano(10 * 1e-6 + 1000 * 2e-6)
    call = exchange(None, model="bounded")
    call.bytes_in = 40
    assert estimate(call) == to_nano(10 * 1e-6 + 300 * 2e-6)
    assert Estimator(priced, output_tokens=100)(call) == to_nano(10 * 1e-6 + 100 * 2e-6)
    asked = exchange(None, model="bounded", max_tokens=5000)  # the request's own wins
    asked.bytes_in = 40
    assert estimate(asked) == to_nano(10 * 1e-6 + 5000 * 2e-6)


def lookup(_provider: str, model: str | None) -> Price | None:
    return PRICE if model in ("mistral-small-latest", "m") else None


@dataclass
class Rows:
    """Budget rows as the database would return them."""

    rows: dict[tuple[str, str], BudgetRow] = field(default_factory=dict)
    loads: list[tuple[str, str]] = field(default_factory=list)
    down: bool = False

    async def load(self, kind: ScopeKind, id: str) -> BudgetRow | None:
        self.loads.append((kind, id))
        if self.down:
            raise LimitsUnavailable("the database is unreachable")
        return self.rows.get((kind, id))

    def budget(self, kind: str, id: str, max_usd: float | None, spend: float = 0.0) -> None:
        self.rows[(kind, id)] = BudgetRow(max_usd, None, spend, None)


def make_guard(
    rows: Rows | None = None, flat: float = 0.0, clock: Clock | None = None
) -> tuple[LimitsGuard, LocalCounters, BudgetDirectory]:
    directory = BudgetDirectory(rows or Rows())
    counters = LocalCounters(directory.seed, clock=clock or Clock())
    guard = LimitsGuard(counters, directory, Estimator(lookup, flat), "open")
    return guard, counters, directory


def exchange(principal: Principal | None, **info: object) -> Exchange:
    ex = Exchange(
        "req-1",
        "POST",
        "/mistral/v1/chat/completions",
        "/v1/chat/completions",
        "mistral",
        time.time(),
        time.perf_counter(),
        principal=principal,
    )
    ex.info = RequestInfo(**info)  # type: ignore[arg-type]
    ex.model = ex.info.model
    return ex


def key(**limits: object) -> Principal:
    return Principal(kind="virtual", token=TOKEN, key_alias="ci-key", **limits)  # type: ignore[arg-type]


async def refused(guard: LimitsGuard, ex: Exchange) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await guard.admit(ex)
    return info.value


async def test_rpm_refusal_carries_retry_and_rate_limit_headers() -> None:
    guard, _, _ = make_guard()
    principal = key(rpm_limit=2, tpm_limit=1000)
    for _ in range(2):
        ex = exchange(principal)
        await guard.admit(ex)
        await guard.cleanup(ex)
    error = await refused(guard, exchange(principal))
    assert (error.status, error.code, error.type) == (
        429,
        "rate_limit_exceeded",
        "rate_limit_error",
    )
    headers = dict(error.headers)
    assert headers[b"retry-after"] == b"60"
    assert headers[b"x-ratelimit-limit-requests"] == b"2"
    assert headers[b"x-ratelimit-remaining-requests"] == b"0"
    assert headers[b"x-ratelimit-limit-tokens"] == b"1000"
    assert headers[b"x-ratelimit-remaining-tokens"] == b"1000"
    assert "2 requests per minute" in error.message


async def test_tpm_counts_the_usage_of_finished_calls() -> None:
    clock = Clock()
    guard, _, _ = make_guard(clock=clock)
    principal = key(tpm_limit=50)
    ex = exchange(principal)
    await guard.admit(ex)
    ex.usage = Usage(prompt_tokens=40, completion_tokens=20)
    await guard.cleanup(ex)
    error = await refused(guard, exchange(principal))
    assert error.code == "rate_limit_exceeded"
    headers = dict(error.headers)
    assert headers[b"x-ratelimit-remaining-tokens"] == b"0"
    assert b"x-ratelimit-limit-requests" not in headers
    clock.advance(60.0)
    await guard.admit(exchange(principal))


async def test_parallel_slot_is_released_by_failed_and_interrupted_calls() -> None:
    guard, _, _ = make_guard()
    principal = key(max_parallel_requests=2)
    first, second = exchange(principal), exchange(principal)
    await guard.admit(first)
    await guard.admit(second)
    error = await refused(guard, exchange(principal))
    assert "2 parallel requests" in error.message
    first.status, first.error = 502, "cannot reach the upstream"
    await guard.cleanup(first)
    third = exchange(principal)
    await guard.admit(third)
    second.interrupted = True
    await guard.cleanup(second)
    await guard.admit(exchange(principal))


async def test_finished_runs_once_per_ticket() -> None:
    guard, _, _ = make_guard()
    principal = key(max_parallel_requests=1)
    ex = exchange(principal)
    await guard.admit(ex)
    await guard.cleanup(ex)
    await guard.cleanup(ex)  # a second call must not free a slot someone else holds
    holder = exchange(principal)
    await guard.admit(holder)
    await refused(guard, exchange(principal))


async def test_key_budget_message_names_the_key_and_the_numbers_never_the_hash() -> None:
    guard, _, _ = make_guard(flat=0.4)
    principal = key(max_budget=1.0)
    for _ in range(2):
        ex = exchange(principal)
        await guard.admit(ex)
        ex.cost = 0.4
        await guard.cleanup(ex)
    last = exchange(principal)
    await guard.admit(last)  # reserves the 0.2 left
    in_flight = exchange(principal)
    error = await refused(guard, in_flight)
    assert (error.status, error.code) == (429, "budget_exceeded")
    assert "key 'ci-key'" in error.message
    assert "$0.8" in error.message and "$0.2 reserved" in error.message
    assert "$1" in error.message
    assert TOKEN not in error.message and key_counter(TOKEN) not in error.message
    assert TICKET.get(in_flight) is None


async def test_end_user_budget_refuses_alice_and_not_bob() -> None:
    rows = Rows()
    rows.budget("end_user", "alice", 0.5, spend=0.5)
    rows.budget("end_user", "bob", 0.5, spend=0.1)
    guard, _, _ = make_guard(rows)
    alice = exchange(MASTER)
    alice.end_user = "alice"
    error = await refused(guard, alice)
    assert error.code == "budget_exceeded"
    assert "end user 'alice'" in error.message
    bob = exchange(MASTER)
    bob.end_user = "bob"
    await guard.admit(bob)
    assert TICKET.get(bob) is not None
    stranger = exchange(MASTER)
    stranger.end_user = "carol"  # no row: no budget
    await guard.admit(stranger)
    assert TICKET.get(stranger) is None


async def test_user_and_team_budgets_apply_to_their_keys() -> None:
    rows = Rows()
    rows.budget("user", "u1", 10.0)
    rows.budget("team", "t1", 1.0, spend=1.0)
    rows.budget("team", "t2", None)  # a team without a budget
    guard, _, _ = make_guard(rows)
    error = await refused(guard, exchange(key(user_id="u1", team_id="t1")))
    assert "team 't1'" in error.message
    ok = exchange(key(user_id="u1", team_id="t2"))
    await guard.admit(ok)
    assert [s.kind for s in ticket_of(ok).budgets] == ["user"]


async def test_the_estimate_uses_max_tokens_and_the_body_size() -> None:
    rows = Rows()
    rows.budget("user", "u1", 100.0)
    guard, counters, _ = make_guard(rows)
    ex = exchange(key(user_id="u1"), model="mistral-small-latest", max_tokens=1000)
    ex.bytes_in = 4001  # ceil(4001 / 4) = 1001 input tokens
    await guard.admit(ex)
    scope = ticket_of(ex).budgets[0]
    state = await counters.budget_state(scope)
    assert state is not None
    assert state.reserved == to_nano(1001 * 1e-6 + 1000 * 2e-6)
    ex.cost, ex.usage = 0.0005, Usage(total_tokens=10)
    await guard.cleanup(ex)
    state = await counters.budget_state(scope)
    assert state is not None
    assert (state.spent, state.reserved) == (to_nano(0.0005), 0)


async def test_an_unpriced_model_reserves_nothing_and_a_flat_estimate_wins() -> None:
    estimate = Estimator(lookup)
    assert estimate(exchange(None, model="unknown", max_tokens=10)) == 0
    flat = Estimator(lookup, flat_usd=0.25)
    assert flat(exchange(None, model="m", max_tokens=10**6)) == to_nano(0.25)


async def test_a_call_without_limits_touches_no_counter() -> None:
    rows = Rows()
    guard, _, _ = make_guard(rows)
    ex = exchange(key())
    await guard.admit(ex)
    assert TICKET.get(ex) is None
    await guard.cleanup(ex)


async def test_budget_rows_are_cached_and_served_stale_when_the_database_is_down() -> None:
    rows = Rows()
    rows.budget("user", "u1", 1.0, spend=0.0)
    clock = Clock()
    directory = BudgetDirectory(rows, ttl=5.0, monotonic=clock)
    first = await directory.scopes(key(user_id="u1"), None)
    await directory.scopes(key(user_id="u1"), None)
    assert rows.loads == [("user", "u1")]
    clock.advance(6.0)
    rows.down = True
    assert await directory.scopes(key(user_id="u1"), None) == first
    with pytest.raises(LimitsUnavailable):
        await directory.scopes(key(team_id="never-seen"), None)
    rows.down = False
    rows.budget("user", "u1", 2.0)
    directory.invalidate("user", "u1")
    (scope,) = await directory.scopes(key(user_id="u1"), None)
    assert scope.max_budget == to_nano(2.0)


async def test_database_down_follows_the_fail_mode() -> None:
    rows = Rows(down=True)
    directory = BudgetDirectory(rows)
    counters = LocalCounters(directory.seed)
    bypassed: list[str] = []
    open_guard = LimitsGuard(
        counters, directory, Estimator(lambda _p, _m: None), "open", bypassed.append
    )
    ex = exchange(key(user_id="u1"))
    await open_guard.admit(ex)
    assert bypassed == ["the database is unreachable"]
    closed = LimitsGuard(counters, directory, Estimator(lambda _p, _m: None), "closed")
    error = await refused(closed, exchange(key(user_id="u1")))
    assert (error.status, error.code) == (503, "limits_unavailable")
