"""CallWatch: deadlines and the lazily armed disconnect watcher cancel the right task."""

from __future__ import annotations

import asyncio

import pytest

from passgate.proxy.watch import DISCONNECT, FIRST_BYTE, IDLE, CallWatch
from passgate.types import Message


class FakeClient:
    """An ASGI ``receive`` that answers ``http.disconnect`` once ``leave()`` is called."""

    def __init__(self) -> None:
        self.calls = 0
        self._gone = asyncio.Event()

    async def receive(self) -> Message:
        self.calls += 1
        await self._gone.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self._gone.set()


def _current() -> asyncio.Task[object]:
    task = asyncio.current_task()
    assert task is not None
    return task


async def _watched(watch: CallWatch, seconds: float) -> str | None:
    """Sleep inside the watched region; the reason the watch cancelled it, or None."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        reason = watch.caught()
        if reason is None:
            raise
        return reason
    finally:
        watch.stop()
    return None


async def test_a_deadline_cancels_the_task_and_takes_the_cancel_back() -> None:
    client = FakeClient()
    watch = CallWatch(_current(), client.receive, arm_after=10, armable=True)
    watch.deadline(0.01, FIRST_BYTE)
    assert await _watched(watch, 5) == FIRST_BYTE
    assert _current().cancelling() == 0
    await asyncio.sleep(0)  # no cancellation left pending on the task


async def test_a_cleared_deadline_never_fires() -> None:
    client = FakeClient()
    watch = CallWatch(_current(), client.receive, arm_after=10, armable=True)
    watch.deadline(0.01, FIRST_BYTE)
    watch.clear_deadline()
    assert await _watched(watch, 0.05) is None


async def test_idle_deadline_moves_with_each_touch_and_fires_without_one() -> None:
    client = FakeClient()
    watch = CallWatch(_current(), client.receive, arm_after=10, armable=True)
    watch.idle_deadline(0.05)

    async def active() -> None:
        for _ in range(6):  # 0.12 s in all, never 0.05 s without a touch
            await asyncio.sleep(0.02)
            watch.touch()
        await asyncio.sleep(1)

    try:
        await active()
        reason = None
    except asyncio.CancelledError:
        reason = watch.caught()
    finally:
        watch.stop()
    assert reason == IDLE
    assert watch.last_activity > 0


async def test_disconnect_is_watched_only_after_arm_after() -> None:
    client = FakeClient()
    watch = CallWatch(_current(), client.receive, arm_after=0.05, armable=True)
    client.leave()
    await asyncio.sleep(0.01)
    assert client.calls == 0  # a fast call never starts the receive() task
    assert await _watched(watch, 5) == DISCONNECT
    assert client.calls == 1


async def test_a_fast_call_never_calls_receive() -> None:
    client = FakeClient()
    watch = CallWatch(_current(), client.receive, arm_after=0.05, armable=True)
    assert await _watched(watch, 0.01) is None
    await asyncio.sleep(0.08)
    assert client.calls == 0


async def test_receive_waits_until_the_body_is_read() -> None:
    client = FakeClient()
    watch = CallWatch(_current(), client.receive, arm_after=0.01, armable=False)
    client.leave()
    await asyncio.sleep(0.03)
    assert client.calls == 0  # aiohttp may still be reading the body through receive()
    watch.body_read()
    assert await _watched(watch, 5) == DISCONNECT


async def test_stop_cancels_the_receive_task_and_later_disconnects_mean_nothing() -> None:
    client = FakeClient()
    watch = CallWatch(_current(), client.receive, arm_after=0.0, armable=True)
    await asyncio.sleep(0.01)
    assert client.calls == 1
    watch.stop()
    client.leave()
    await asyncio.sleep(0.01)
    assert watch.reason is None
    assert _current().cancelling() == 0


async def test_a_cancel_from_elsewhere_propagates() -> None:
    async def call() -> str | None:
        watch = CallWatch(_current(), FakeClient().receive, arm_after=10, armable=True)
        watch.deadline(5, FIRST_BYTE)
        return await _watched(watch, 5)

    task = asyncio.create_task(call())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outside_cancel_that_races_the_deadline_still_propagates() -> None:
    watches: list[CallWatch] = []

    async def call() -> str | None:
        watch = CallWatch(_current(), FakeClient().receive, arm_after=10, armable=True)
        watches.append(watch)
        return await _watched(watch, 5)

    task = asyncio.create_task(call())
    await asyncio.sleep(0.01)
    (watch,) = watches
    watch.deadline(0, FIRST_BYTE)
    while watch.reason is None:  # the deadline fires; the task has not run since
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
