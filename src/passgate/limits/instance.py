"""Counters shared by every worker of an instance, held by its limits process.

A worker keeps one Unix-socket connection to the holder (``holder``) and pipelines
its requests on it: an admission waits for its reply, a finish is sent and not
waited for. Only calls that have a limit or a budget reach this class at all.

Faults follow ``redis_fail_mode`` through ``LimitsUnavailable``: a holder that does
not answer within ``timeout``, or whose connection ends, makes the connection be
dropped (the holder then gives back whatever its tickets held: the connection is
their lease), and for ``cooldown`` seconds calls fail at once instead of waiting;
the next call after that connects again. A ticket admitted on a dropped connection
is finished as a count of its tokens and cost only, since it holds nothing any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

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
from passgate.limits.wire import Message, budget_fields, key_fields
from passgate.lines import LineSplitter

log = logging.getLogger("passgate.limits")

_SEED_ATTEMPTS = 3
_READ_SIZE = 1 << 16
_ADMITTED_LENGTH = 6  # [rid, "ok", ticket, amount, requests used, tokens used]


class InstanceCounters:
    """The ``Counters`` of the instance's limits process, reached over its socket."""

    def __init__(
        self,
        path: str,
        seed_loader: SeedLoader,
        timeout: float = 1.0,
        cooldown: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._seed = SharedSeeds(seed_loader)
        self._timeout = timeout
        self._cooldown = cooldown
        self._monotonic = monotonic
        self._stream: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        # request id -> (its reply, when to give up on it), oldest first
        self._replies: dict[int, tuple[asyncio.Future[Message], float]] = {}
        self._watchdog: asyncio.TimerHandle | None = None
        self._outgoing: list[bytes] = []
        self._ids = itertools.count()
        self._generation = 0  # counts connections: a ticket names the one it was admitted on
        self._prefix = "0:"
        self._down_until = 0.0
        self._down = False

    async def start(self) -> None:
        """Nothing to start: the first call that needs the holder connects."""

    async def stop(self) -> None:
        """Close the connection (the holder gives back what its tickets still hold)."""
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, LimitsUnavailable, OSError):
                await self._connecting
        self._drop(None)

    async def admit(self, request: AdmitRequest) -> Admission:
        """Check every limit and take all it needs in one step of the holder, or nothing."""
        budgets = budget_fields(request.budgets)
        message: Message = ["a", 0, key_fields(request.key), budgets, request.amount]
        for _ in range(_SEED_ATTEMPTS):
            reply = await self._ask(message)
            if reply[1] != "seed":
                break
            await self._seed_missing([request.budgets[i] for i in reply[2]])
        else:
            raise LimitsUnavailable("budget counters could not be seeded in the limits process")
        if reply[1] == "ok":
            ticket = Ticket(self._prefix + reply[2], request.key, request.budgets, reply[3])
            return Admission(ticket, None, reply[4], reply[5])
        scope = request.budgets[reply[5]] if reply[5] >= 0 else None
        return Admission(
            None,
            reply[1],
            reply[2],
            reply[3],
            retry_after=max(0.0, float(reply[4])),
            scope=scope,
            spent=reply[6],
            reserved=reply[7],
        )

    async def finish(self, ticket: Ticket, tokens: int, cost: int) -> None:
        """Give back what the ticket holds and count what the call used (not waited for)."""
        if self._stream is None:
            # the holder was lost: the one that replaces it starts from the database
            return
        if ticket.id.startswith(self._prefix):
            message: Message = ["f", ticket.id[len(self._prefix) :], tokens, max(cost, 0)]
        elif tokens > 0 or cost > 0:
            key = ticket.key
            counts_tokens = key is not None and key.tpm is not None and tokens > 0
            message = [
                "c",
                key_fields(key) if counts_tokens else None,
                budget_fields(ticket.budgets),
                tokens if counts_tokens else 0,
                max(cost, 0),
            ]
        else:
            return
        self._send(message)

    async def budget_state(self, scope: BudgetScope) -> BudgetState | None:
        """The budget counter as the holder keeps it."""
        reply = await self._ask(["b", 0, scope.counter, scope.period])
        if reply[1] is None:
            return None
        return BudgetState(reply[1], reply[2], reply[3])

    async def rate_state(self, counter: str) -> RateState:
        """The key's rate counters as the holder keeps them."""
        reply = await self._ask(["r", 0, counter])
        return RateState(int(reply[1]), int(reply[2]), int(reply[3]))

    async def _seed_missing(self, scopes: list[BudgetScope]) -> None:
        seeds = await asyncio.gather(*(self._seed(scope) for scope in scopes))
        fields = [
            [scope.counter, seed.spend, seed.reset_at]
            for scope, seed in zip(scopes, seeds, strict=True)
        ]
        await self._ask(["s", 0, fields])

    async def _ask(self, message: Message) -> Message:
        """Send one request and wait for its reply; ``LimitsUnavailable`` when none comes."""
        if self._stream is None:
            await self._connect()
        rid = next(self._ids)
        message[1] = rid
        reply: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[rid] = (reply, self._monotonic() + self._timeout)
        self._send(message)
        try:
            return await reply  # failed by the watchdog, or by _drop, when none comes
        finally:
            self._replies.pop(rid, None)

    def _send(self, message: Message) -> None:
        """Queue a message; the queue is written once per turn of the event loop, so the
        messages of calls admitted together cost one write between them."""
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(orjson.dumps(message))

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if outgoing and self._stream is not None:
            outgoing.append(b"")
            self._stream.write(b"\n".join(outgoing))

    async def _connect(self) -> None:
        if self._down and self._monotonic() < self._down_until:
            raise LimitsUnavailable("the limits process is unreachable")
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._open())
        task = self._connecting
        try:
            # a call that gives up (client gone) must not cancel the others' connect
            await asyncio.shield(task)
        finally:
            if self._connecting is task and task.done():
                self._connecting = None

    async def _open(self) -> None:
        try:
            reader, stream = await asyncio.wait_for(
                asyncio.open_unix_connection(self._path), self._timeout
            )
        except (OSError, TimeoutError) as exc:
            self._fail(f"cannot connect ({type(exc).__name__})")
            raise LimitsUnavailable("the limits process is unreachable") from exc
        self._generation += 1
        self._prefix = f"{self._generation}:"
        self._stream = stream
        loop = asyncio.get_running_loop()
        self._reading = loop.create_task(self._read(reader, stream))
        self._watchdog = loop.call_later(self._timeout / 4, self._watch)
        if self._down:
            self._down = False
            log.warning("the limits process is reachable again; shared limits resumed")

    def _watch(self) -> None:
        """Drop the connection when its oldest request waited past its deadline: one timer
        per connection, instead of one per request."""
        oldest = next(iter(self._replies.values()), None)
        if oldest is not None and oldest[1] < self._monotonic():
            self._drop("did not answer in time")
            return
        self._watchdog = asyncio.get_running_loop().call_later(self._timeout / 4, self._watch)

    async def _read(self, reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        lines = LineSplitter()
        try:
            while chunk := await reader.read(_READ_SIZE):
                for line in lines.feed(chunk):
                    reply: Any = orjson.loads(line)
                    waiting = self._replies.get(reply[0])
                    if waiting is not None and not waiting[0].done():
                        waiting[0].set_result(reply)
                    elif reply[1] == "ok" and len(reply) == _ADMITTED_LENGTH:
                        # admitted for a call that stopped waiting (its client left):
                        # give back at once what the ticket holds
                        self._send(["f", reply[2], 0, 0])
        except (OSError, ValueError, IndexError, TypeError, KeyError) as exc:
            reason = f"connection failed ({type(exc).__name__})"
        else:
            reason = "connection closed"
        if self._stream is stream:
            self._drop(reason)

    def _drop(self, reason: str | None) -> None:
        """Close the connection and fail every request waiting on it."""
        stream, self._stream = self._stream, None
        reading, self._reading = self._reading, None
        if stream is not None:
            stream.close()
        if reading is not None and reading is not asyncio.current_task():
            reading.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for waiter, _ in self._replies.values():
            if not waiter.done():
                waiter.set_exception(LimitsUnavailable("the limits process connection ended"))
        self._replies.clear()
        self._outgoing.clear()  # written for the connection that ended
        if reason is not None:
            self._fail(reason)

    def _fail(self, reason: str) -> None:
        if not self._down:
            log.warning(
                "the limits process is unreachable (%s); limits follow redis_fail_mode", reason
            )
        self._down = True
        self._down_until = self._monotonic() + self._cooldown
