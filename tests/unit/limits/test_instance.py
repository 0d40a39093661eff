"""The instance's limits holder and its workers' client: leases and faults."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from passgate.limits.backend import AdmitRequest, BudgetScope, KeyLimits, LimitsUnavailable, to_nano
from passgate.limits.holder import CounterHolder
from passgate.limits.instance import InstanceCounters
from tests.unit.limits.test_backends import Clock, Seeds

SCOPE = BudgetScope("team", "t1", "team 't1'", "team:t1", to_nano(1.0))
KEY = KeyLimits("k1", parallel=1)


class Holder:
    """A ``CounterHolder`` served on a Unix socket that can be stopped and started again."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.holder = CounterHolder(clock=Clock())
        self._server: asyncio.Server | None = None
        self._streams: list[asyncio.StreamWriter] = []

    async def up(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen()
        self._server = await asyncio.start_unix_server(self._handle, sock=listener)

    async def _handle(self, reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        self._streams.append(stream)
        await self.holder.handle(reader, stream)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for stream in self._streams:
                stream.close()
            await self._server.wait_closed()

    async def down(self) -> None:
        """Stop as a crashed process would: connections closed, the socket gone."""
        assert self._server is not None
        self._server.close()
        for stream in self._streams:
            stream.close()
        self._streams.clear()
        Path(self.path).unlink()
        self.holder = CounterHolder(clock=Clock())


@pytest.fixture
async def holder(tmp_path: Path) -> AsyncIterator[Holder]:
    served = Holder(tmp_path / "limits.sock")
    await served.up()
    yield served
    await served.close()


async def test_a_dropped_connection_gives_back_what_its_tickets_hold(holder: Holder) -> None:
    first = InstanceCounters(holder.path, Seeds())
    admitted = await first.admit(AdmitRequest(KEY, (SCOPE,), to_nano(0.4)))
    assert admitted.ticket is not None
    other = InstanceCounters(holder.path, Seeds())
    assert (await other.admit(AdmitRequest(KEY))).reason == "parallel"
    await first.stop()  # the worker went away with the call in flight
    for _ in range(100):
        state = await other.budget_state(SCOPE)
        if state is not None and state.reserved == 0:
            break
        await asyncio.sleep(0.01)
    assert state is not None and state.reserved == 0
    assert (await other.admit(AdmitRequest(KEY))).ticket is not None
    await other.stop()


async def test_an_unreachable_holder_is_unavailable_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "later.sock"
    counters = InstanceCounters(str(path), Seeds(), timeout=0.2, cooldown=0.05)
    with pytest.raises(LimitsUnavailable):
        await counters.admit(AdmitRequest(KEY))
    late = Holder(path)
    await late.up()
    await asyncio.sleep(0.06)  # the cooldown after the failure
    assert (await counters.admit(AdmitRequest(KEY))).ticket is not None
    await counters.stop()
    await late.close()


async def test_a_holder_lost_mid_call_fails_waiting_calls_and_counts_the_ticket_later(
    holder: Holder,
) -> None:
    counters = InstanceCounters(holder.path, Seeds(), timeout=0.5, cooldown=0.05)
    admitted = await counters.admit(AdmitRequest(KEY, (SCOPE,), to_nano(0.4)))
    assert admitted.ticket is not None
    await holder.down()
    await asyncio.sleep(0.05)
    with pytest.raises(LimitsUnavailable):
        await counters.admit(AdmitRequest(KEY))
    await holder.up()
    await asyncio.sleep(0.06)
    # the new holder starts empty: the old ticket's slot and reservation are not there
    again = await counters.admit(AdmitRequest(KEY, (SCOPE,), to_nano(0.4)))
    assert again.ticket is not None
    # the old ticket now only counts its cost; the new one gives back its reservation
    await counters.finish(admitted.ticket, 0, to_nano(0.1))
    await counters.finish(again.ticket, 0, to_nano(0.2))
    state = await counters.budget_state(SCOPE)
    assert state is not None and (state.spent, state.reserved) == (to_nano(0.3), 0)
    await counters.stop()


async def test_an_admission_nobody_waits_for_any_more_is_given_back(holder: Holder) -> None:
    counters = InstanceCounters(holder.path, Seeds())
    first = await counters.admit(AdmitRequest(KEY, (SCOPE,), to_nano(0.4)))  # seeds SCOPE
    assert first.ticket is not None
    await counters.finish(first.ticket, 0, 0)
    admit = asyncio.ensure_future(counters.admit(AdmitRequest(KEY, (SCOPE,), to_nano(0.4))))
    await asyncio.sleep(0)  # the request is queued
    admit.cancel()  # the call's client went away before the answer came
    for _ in range(100):
        state = await counters.budget_state(SCOPE)
        if state is not None and state.reserved == 0:
            break
        await asyncio.sleep(0.01)
    assert state is not None and state.reserved == 0
    assert (await counters.admit(AdmitRequest(KEY))).ticket is not None  # the slot is free
    await counters.stop()


async def test_rate_state_is_the_holders_for_every_worker(holder: Holder) -> None:
    first = InstanceCounters(holder.path, Seeds())
    other = InstanceCounters(holder.path, Seeds())
    admitted = await first.admit(AdmitRequest(KEY))
    assert admitted.ticket is not None
    assert (await other.rate_state(KEY.counter)).parallel == 1
    await first.stop()  # the worker went away with the call in flight: its slot is freed
    for _ in range(100):
        state = await other.rate_state(KEY.counter)
        if state.parallel == 0:
            break
        await asyncio.sleep(0.01)
    assert state.parallel == 0
    await other.stop()
