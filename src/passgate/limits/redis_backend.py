"""Counters in Redis, shared by every gateway instance.

Each operation is one Lua script (``redis_scripts``), so admissions from many
instances never race. Scripts run through ``Script`` objects (EVALSHA, falling
back to loading the script), so a restarted or flushed Redis just works again.

Calls in flight hold leases (a parallel slot, budget reservations) that expire
unless this instance refreshes them: a crashed instance cannot leak slots or
reserved money for longer than ``lease_ttl``. A ``finish`` that fails while
Redis is away is queued and retried, so its spend still reaches the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from passgate.limits import redis_scripts
from passgate.limits.backend import (
    Admission,
    AdmitRequest,
    BudgetScope,
    BudgetState,
    LimitsUnavailable,
    RateState,
    SeedLoader,
    SharedSeeds,
    Ticket,
)
from passgate.limits.periods import next_reset
from passgate.tasks import cancel_and_wait

log = logging.getLogger("passgate.limits")

T = TypeVar("T")
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)
_SEED_ATTEMPTS = 3
_FINISHED_TTL_MS = 300_000  # how long a finished ticket is remembered against double counting


def redis_client(url: str, timeout: float = 1.0, max_connections: int = 128) -> Redis:
    """A client that fails fast when Redis is away and reconnects by itself when it is back.

    The pool is bounded and callers wait for a free connection (up to ``5 x timeout``)
    instead of failing, so a burst of calls queues rather than trips fail-open/closed.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5 * timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # one retry on a fresh connection hides a pooled socket that died with a restart
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


class RedisCounters:
    """Rate windows, parallel gauges and budget reservations in Redis."""

    def __init__(
        self,
        client: Redis,
        seed_loader: SeedLoader,
        prefix: str = "passgate:",
        clock: Callable[[], float] = time.time,
        window: float = 60.0,
        lease_ttl: float = 60.0,
        cooldown: float = 1.0,
        pending_max: int = 10_000,
    ) -> None:
        self._client = client
        self._seed = SharedSeeds(seed_loader)
        self._prefix = prefix
        self._clock = clock
        self._window = window
        self._ttl = lease_ttl
        self._cooldown = cooldown
        self._admit = client.register_script(redis_scripts.ADMIT)
        self._finish = client.register_script(redis_scripts.FINISH)
        self._seed_script = client.register_script(redis_scripts.SEED)
        self._leases: dict[str, list[tuple[str, str]]] = {}
        self._pending: deque[tuple[Ticket, int, int]] = deque(maxlen=pending_max)
        self._down_until = 0.0
        self._down = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Start refreshing leases and retrying queued finishes."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._upkeep())

    async def stop(self) -> None:
        """Stop the upkeep task and try the queued finishes once more (the client stays open)."""
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(LimitsUnavailable):
            await self.maintain()
        if self._pending:
            log.warning(
                "%d finished calls could not be counted in Redis before shutdown; "
                "their spend is recorded in the database but missing from the shared counters",
                len(self._pending),
            )

    async def admit(self, request: AdmitRequest) -> Admission:
        """Check every limit and take all it needs in one script, or nothing."""
        ticket_id = secrets.token_hex(8)
        for _ in range(_SEED_ATTEMPTS):
            now = self._clock()
            keys, args = self._admit_call(request, ticket_id, now)
            reply = await self._call(self._admit(keys=keys, args=args))
            reply = [_text(item) for item in reply]
            if reply[0] != "seed":
                break
            await self._seed_missing([request.budgets[int(i) - 1] for i in reply[1:]])
        else:
            raise LimitsUnavailable("budget counters could not be seeded in Redis")
        requests_used = None if int(reply[1]) < 0 else int(reply[1])
        tokens_used = None if int(reply[2]) < 0 else int(reply[2])
        if reply[0] == "ok":
            ticket = Ticket(ticket_id, request.key, request.budgets, int(reply[3]))
            self._hold(ticket)
            return Admission(ticket, None, requests_used, tokens_used)
        scope = request.budgets[int(reply[4]) - 1] if reply[0] == "budget" else None
        return Admission(
            None,
            reply[0],
            requests_used,
            tokens_used,
            retry_after=max(0.0, float(reply[3])),
            scope=scope,
            spent=int(reply[5]),
            reserved=int(reply[6]),
        )

    async def finish(self, ticket: Ticket, tokens: int, cost: int) -> None:
        """Give back what the ticket holds; queued for retry when Redis is away."""
        self._leases.pop(ticket.id, None)
        try:
            await self._run_finish(ticket, tokens, cost)
        except LimitsUnavailable:
            self._pending.append((ticket, tokens, cost))
            raise

    async def budget_state(self, scope: BudgetScope) -> BudgetState | None:
        """The budget counter as Redis holds it, with a reset that fell due applied."""
        spent, reserved, reset_at = map(
            _text,
            await self._call(
                self._client.hmget(
                    self._key("bud", scope.counter), ["spend", "reserved", "reset_at"]
                )
            ),
        )
        if spent is None:
            return None
        due = float(reset_at) if reset_at else None
        now = self._clock()
        if due is not None and scope.period is not None and now >= due:
            return BudgetState(0, int(reserved or 0), next_reset(due, scope.period, now))
        return BudgetState(int(spent), int(reserved or 0), due)

    async def rate_state(self, counter: str) -> RateState:
        """The key's rate counters in one transaction of reads: the entries the admission
        script would keep (it trims them only when it runs), and nothing is written."""
        now = self._clock()
        index = math.floor(now / self._window)
        pipe = self._client.pipeline(transaction=True)
        pipe.zcount(self._key("rpm", counter), f"({now - self._window!r}", "+inf")
        pipe.get(self._key("tpm", f"{counter}:{index}"))
        pipe.zcount(self._key("par", counter), f"({now!r}", "+inf")
        requests, tokens, parallel = await self._call(pipe.execute())
        return RateState(int(requests), int(_text(tokens) or 0), int(parallel))

    async def maintain(self) -> None:
        """Retry queued finishes, then extend the leases of the calls still in flight."""
        while self._pending:
            ticket, tokens, cost = self._pending[0]
            await self._run_finish(ticket, tokens, cost)
            self._pending.popleft()
        if not self._leases:
            return
        expiry = self._clock() + self._ttl
        pipe = self._client.pipeline(transaction=False)
        for leases in list(self._leases.values()):
            for name, member in leases:
                pipe.zadd(name, {member: expiry}, xx=True)
        await self._call(pipe.execute())

    @property
    def pending(self) -> int:
        """Finishes waiting for Redis to come back."""
        return len(self._pending)

    async def _upkeep(self) -> None:
        while True:
            # woken early when Redis comes back with finishes queued
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._ttl / 3)
            self._wake.clear()
            try:
                await self.maintain()
            except LimitsUnavailable:
                continue  # logged by _call; the next round retries
            except Exception:
                log.exception("limits upkeep failed")

    def _key(self, kind: str, counter: str) -> str:
        return f"{self._prefix}{kind}:{counter}"

    def _admit_call(
        self, request: AdmitRequest, ticket_id: str, now: float
    ) -> tuple[list[str], list[Any]]:
        key = request.key
        counter = key.counter if key is not None else "-"
        index = math.floor(now / self._window)
        keys = [
            self._key("rpm", counter),
            self._key("tpm", f"{counter}:{index}"),
            self._key("par", counter),
            self._key("adm", ticket_id),
        ]
        args: list[Any] = [
            repr(now),
            repr(self._window),
            _limit(key.rpm if key else None),
            _limit(key.tpm if key else None),
            _limit(key.parallel if key else None),
            repr(self._ttl),
            ticket_id,
            request.amount,
            repr(self._window - now % self._window),
        ]
        for scope in request.budgets:
            keys += [self._key("bud", scope.counter), self._key("res", scope.counter)]
            args += [scope.max_budget, repr(scope.period or 0)]
        return keys, args

    async def _run_finish(self, ticket: Ticket, tokens: int, cost: int) -> None:
        key = ticket.key
        counter = key.counter if key is not None else "-"
        index = math.floor(self._clock() / self._window)
        counts_tokens = key is not None and key.tpm is not None and tokens > 0
        keys = [
            self._key("fin", ticket.id),
            self._key("tpm", f"{counter}:{index}"),
            self._key("par", counter),
        ]
        for scope in ticket.budgets:
            keys += [self._key("bud", scope.counter), self._key("res", scope.counter)]
        args: list[Any] = [
            tokens if counts_tokens else 0,
            math.ceil(2000 * self._window),
            ticket.id,
            ticket.amount,
            max(cost, 0),
            _FINISHED_TTL_MS,
        ]
        await self._call(self._finish(keys=keys, args=args))

    async def _seed_missing(self, scopes: Sequence[BudgetScope]) -> None:
        seeds = await asyncio.gather(*(self._seed(scope) for scope in scopes))
        args: list[Any] = []
        for seed in seeds:
            args += [seed.spend, "" if seed.reset_at is None else repr(seed.reset_at)]
        keys = [self._key("bud", scope.counter) for scope in scopes]
        await self._call(self._seed_script(keys=keys, args=args))

    def _hold(self, ticket: Ticket) -> None:
        leases = []
        if ticket.key is not None and ticket.key.parallel is not None:
            leases.append((self._key("par", ticket.key.counter), ticket.id))
        member = f"{ticket.id}:{ticket.amount}"
        leases += [(self._key("res", scope.counter), member) for scope in ticket.budgets]
        if leases:
            self._leases[ticket.id] = leases

    async def _call(self, operation: Awaitable[T]) -> T:
        """Run one Redis operation, turning any Redis failure into ``LimitsUnavailable``."""
        if self._down and time.monotonic() < self._down_until:
            if asyncio.iscoroutine(operation):
                operation.close()
            raise LimitsUnavailable("Redis is unreachable")
        try:
            result = await operation
        except (*_UNREACHABLE, RedisError) as exc:
            if not self._down:
                if isinstance(exc, _UNREACHABLE):
                    log.warning(
                        "Redis is unreachable (%s); limits follow redis_fail_mode",
                        type(exc).__name__,
                    )
                else:  # e.g. out of memory: not a lost connection, but just as unusable
                    log.error("Redis refused a limits operation: %s", exc)
            self._down = True
            self._down_until = time.monotonic() + self._cooldown
            reason = "unreachable" if isinstance(exc, _UNREACHABLE) else "refusing commands"
            raise LimitsUnavailable(f"Redis is {reason}") from exc
        if self._down:
            self._down = False
            log.warning("Redis is reachable again; shared limits resumed")
            if self._pending:
                self._wake.set()
        return result


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _limit(value: int | None) -> int:
    return -1 if value is None else value
