"""CallWatch: deadlines and the lazily armed disconnect watcher cancel the right task."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

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


async def _watched(
    watch: CallWatch, seconds: float, touches: int = 0, every: float = 0.0
) -> str | None:
    """Inside the watched region, touch the watch ``touches`` times ``every`` seconds apart,
    then sleep ``seconds``; the reason the watch cancelled it, or None."""
    try:
        for _ in range(touches):
            await asyncio.sleep(every)
            watch.touch()
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
    # 0.12 s in all, never 0.05 s without a touch
    assert await _watched(watch, 5, touches=6, every=0.02) == IDLE
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


class _CountingTimers:
    """Counts the timers a loop is asked for (``call_at`` and ``call_later``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        call_at, call_later = loop.call_at, loop.call_later

        def counting_at(*args: object, **kwargs: object) -> asyncio.TimerHandle:
            self.count += 1
            return call_at(*args, **kwargs)  # type: ignore[arg-type]

        def counting_later(*args: object, **kwargs: object) -> asyncio.TimerHandle:
            self.count += 1
            return call_later(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(loop, "call_at", counting_at)
        monkeypatch.setattr(loop, "call_later", counting_later)


async def test_a_call_that_ends_before_arm_after_sets_one_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timers = _CountingTimers(asyncio.get_running_loop(), monkeypatch)
    watch = CallWatch(_current(), FakeClient().receive, arm_after=0.05, armable=False)
    watch.deadline(600, FIRST_BYTE)  # the relay's first-byte deadline
    watch.clear_deadline()
    watch.body_read()
    watch.deadline(300, IDLE)  # the response's read deadline
    watch.clear_deadline()
    watch.stop()
    assert timers.count == 1


async def test_a_stopped_watch_sets_no_timer_and_cancels_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timers = _CountingTimers(asyncio.get_running_loop(), monkeypatch)
    watch = CallWatch(_current(), FakeClient().receive, arm_after=0.05, armable=True)
    watch.stop()
    watch.stop()  # the relay stops it twice: once the answer is out, and when the call ends
    watch.deadline(0.001, FIRST_BYTE)
    watch.idle_deadline(0.001)
    assert timers.count == 1  # the one set at the start, cancelled by the first stop
    await asyncio.sleep(0.02)
    assert watch.reason is None
    assert _current().cancelling() == 0


async def test_after_arming_the_timer_moves_on_to_the_deadline() -> None:
    client = FakeClient()
    watch = CallWatch(_current(), client.receive, arm_after=0.01, armable=True)
    watch.deadline(0.06, FIRST_BYTE)
    await asyncio.sleep(0.03)
    assert client.calls == 1  # armed at 0.01 s; the deadline is still to come
    assert await _watched(watch, 5) == FIRST_BYTE


async def test_a_stream_touched_past_arm_after_goes_idle_only_without_touches() -> None:
    client = FakeClient()
    watch = CallWatch(_current(), client.receive, arm_after=0.01, armable=True)
    watch.idle_deadline(0.04)
    started = asyncio.get_running_loop().time()
    assert await _watched(watch, 5, touches=5, every=0.02) == IDLE
    assert client.calls == 1
    assert asyncio.get_running_loop().time() - started >= 0.14  # 0.1 s of touches + 0.04 s


class _PlainHandle:
    """What uvloop's ``call_at`` hands back for a moment less than a millisecond away: a
    ``Handle`` that can be cancelled, but has no ``when()``."""

    def __init__(self, timer: asyncio.TimerHandle) -> None:
        self._timer = timer

    def __getattr__(self, name: str) -> object:
        if name == "when":
            raise AttributeError(name)
        return getattr(self._timer, name)


async def _a_deadline_after_a_timer_due_now() -> str | None:
    # arm_after=0: the first timer is due at once (uvloop: a plain Handle); the deadline
    # that follows must not ask that handle when it is due
    watch = CallWatch(_current(), FakeClient().receive, arm_after=0.0, armable=False)
    watch.deadline(0.01, FIRST_BYTE)
    watch.idle_deadline(0.02)
    return await _watched(watch, 5)


async def test_a_loop_handing_back_plain_handles_does_not_break_the_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    call_at = loop.call_at

    def plain_call_at(*args: object, **kwargs: object) -> _PlainHandle:
        return _PlainHandle(call_at(*args, **kwargs))  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "call_at", plain_call_at)
    assert await _a_deadline_after_a_timer_due_now() == IDLE


def test_under_uvloop_a_timer_due_now_does_not_break_the_watch() -> None:
    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(_a_deadline_after_a_timer_due_now()) == IDLE
    finally:
        loop.close()
