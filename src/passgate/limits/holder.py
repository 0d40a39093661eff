"""The counters of every worker of an instance, held in one place: the limits process.

Each worker keeps one connection to the holder and sends it its admissions and
finishes (``wire``). The holder runs them one at a time on ``LocalCounters``, so an
admission is atomic across workers exactly as it is within one worker.

A connection is the lease of every ticket admitted on it: when it ends (the worker
exited, crashed, or dropped the connection after a timeout), the holder gives back
the parallel slots and reservations its tickets still hold. Budget counters start
from the seeds the workers send (the database's figures), as with Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson

from passgate.limits.backend import (
    AdmitRequest,
    BudgetScope,
    KeyLimits,
    LimitsUnavailable,
    Seed,
    Ticket,
)
from passgate.limits.local import LocalCounters
from passgate.limits.wire import Message, budgets_of, key_of
from passgate.lines import LineSplitter

log = logging.getLogger("passgate.limits")

LINE_LIMIT = 1 << 20  # a message is a few hundred bytes; anything near this is not one
_READ_SIZE = 1 << 16


async def _unseeded(scope: BudgetScope) -> Seed:
    # the holder answers "seed" before admitting a budget without a counter
    raise LimitsUnavailable(f"no seed for {scope.counter}")


class CounterHolder:
    """Serves one ``LocalCounters`` to the connections of an instance's workers."""

    def __init__(self, clock: Callable[[], float] = time.time, window: float = 60.0) -> None:
        self.counters = LocalCounters(_unseeded, clock=clock, window=window)
        self.bad_messages = 0

    async def handle(self, reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        """One worker's connection, served until it ends; then its tickets are given back."""
        tickets: dict[str, Ticket] = {}
        lines = LineSplitter()
        try:
            # every message read at once is served, and its replies written, in one go:
            # under load a worker's messages arrive in runs, and so leave its replies
            while chunk := await reader.read(_READ_SIZE):
                whole = lines.feed(chunk)
                if len(lines.rest) > LINE_LIMIT:
                    raise ValueError("a message over the line limit")
                replies = []
                for line in whole:
                    reply = await self.serve(orjson.loads(line), tickets)
                    if reply is not None:
                        replies.append(orjson.dumps(reply))
                if replies:
                    replies.append(b"")
                    stream.write(b"\n".join(replies))
        except (ValueError, TypeError, IndexError, KeyError, LimitsUnavailable) as exc:
            # the stream's framing or contents can no longer be trusted: end it
            self.bad_messages += 1
            log.error("limits process: a message was refused (%s)", type(exc).__name__)
        except OSError as exc:
            log.warning("limits process: a worker connection failed (%s)", type(exc).__name__)
        finally:
            for ticket in tickets.values():
                await self.counters.finish(ticket, 0, 0)
            stream.close()

    async def serve(self, message: Message, tickets: dict[str, Ticket]) -> Message | None:
        """The reply to one message (None for the ones that need none)."""
        op = message[0]
        if op == "f":
            ticket = tickets.pop(str(message[1]), None)
            if ticket is not None:
                await self.counters.finish(ticket, int(message[2]), int(message[3]))
            return None
        if op == "c":
            _, key, budgets, tokens, cost = message
            limits = key_of(key)
            tokens_only = None if limits is None else KeyLimits(limits.counter, tpm=limits.tpm)
            await self.counters.finish(
                Ticket("", tokens_only, budgets_of(budgets), 0), int(tokens), int(cost)
            )
            return None
        rid = message[1]
        if op == "a":
            return await self._admit(rid, message, tickets)
        if op == "s":
            for counter, spend, reset_at in message[2]:
                self.counters.seed(
                    str(counter), Seed(int(spend), None if reset_at is None else float(reset_at))
                )
            return [rid, "ok"]
        if op == "b":
            scope = budgets_of([[message[2], 0, message[3]]])[0]
            state = await self.counters.budget_state(scope)
            if state is None:
                return [rid, None]
            return [rid, state.spent, state.reserved, state.reset_at]
        if op == "r":
            rate = await self.counters.rate_state(str(message[2]))
            return [rid, rate.requests, rate.tokens, rate.parallel]
        raise ValueError(f"unknown operation {op!r}")

    async def _admit(self, rid: object, message: Message, tickets: dict[str, Ticket]) -> Message:
        _, _, key, budget_fields, amount = message
        budgets = budgets_of(budget_fields)
        missing = self.counters.unseeded(budgets)
        if missing:
            return [rid, "seed", missing]
        # every counter is seeded: admit runs to its end without awaiting anything
        admission = await self.counters.admit(AdmitRequest(key_of(key), budgets, int(amount)))
        ticket = admission.ticket
        if ticket is not None:
            tickets[ticket.id] = ticket
            return [
                rid,
                "ok",
                ticket.id,
                ticket.amount,
                admission.requests_used,
                admission.tokens_used,
            ]
        scope = -1 if admission.scope is None else budgets.index(admission.scope)
        return [
            rid,
            admission.reason,
            admission.requests_used,
            admission.tokens_used,
            admission.retry_after,
            scope,
            admission.spent,
            admission.reserved,
        ]
