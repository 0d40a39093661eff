"""One watch per forwarded call: it cancels the relaying task when the client leaves or the
upstream is too slow, and says which of the two happened.

Why not ``asyncio.timeout`` and an always-running ``receive()`` task: on the hot path they
cost a task, a future and several loop look-ups per call (each one a ``getpid`` system call
in CPython 3.11), while nearly every call ends long before any of them matters. Here a call
has one timer handle, set at the earliest moment anything could be due (the disconnect
watcher's arming, a deadline); a later deadline, or one cleared, leaves it as it is, and
when it fires it finds what is due and sets itself for what is left. A call that ends within
``arm_after`` (nearly all of them) creates and cancels one timer, where a timer per concern
made three of each (cheaper in a tight loop, though the instructions a worker executes per
call did not change measurably: ``docs/performance.md``). The ``receive()`` task that
notices a disconnect is only started once the call has lasted ``arm_after`` seconds (and the
request body has been read whole, so it cannot steal a body chunk): a call that ends sooner
never pays for it, and a client that leaves during a fast call changes nothing the upstream
has not already done.

The watch keeps the moment its timer is due itself: a loop's ``call_at`` may hand back a
plain ``Handle`` with no ``when()`` (uvloop does for a moment less than a millisecond
away, as happens when the loop runs late). For the same reason a moment within that
millisecond counts as due when the timer fires: uvloop's clock ticks in milliseconds, and
a timer set again for it would fire at once, and again, until the clock moved.

A timer callback only runs while the task is suspended, and ``stop`` cancels everything
before the task moves on, so the cancellation always lands inside the watched region.
"""

from __future__ import annotations

import asyncio
from typing import Final

from passgate.types import Message, Receive

DISCONNECT: Final = "client disconnected"
FIRST_BYTE: Final = "no first byte in time"
IDLE: Final = "upstream idle"
_EARLY = 0.001  # a moment closer than this is due now (uvloop's timer resolution)


class CallWatch:
    """Cancels ``task`` on a client disconnect or an expired deadline; see the module doc."""

    __slots__ = (
        "_arm_at",
        "_armable",
        "_base",
        "_due_at",
        "_due_reason",
        "_idle",
        "_loop",
        "_receive",
        "_receiver",
        "_stopped",
        "_task",
        "_timer",
        "_timer_at",
        "last_activity",
        "reason",
    )

    def __init__(
        self, task: asyncio.Task[object], receive: Receive, arm_after: float, armable: bool
    ) -> None:
        self._task = task
        self._loop = task.get_loop()
        self._receive = receive
        self._base = task.cancelling()
        self._armable = armable  # False while the request body may still be read
        self._stopped = False
        self._receiver: asyncio.Task[Message] | None = None
        # Each moment is None once it has passed (or was cleared).
        self._arm_at: float | None = self._loop.time() + arm_after
        self._due_at: float | None = None
        self._due_reason = ""
        self._idle = 0.0  # > 0: _due_at moves with last_activity
        self.last_activity = 0.0
        self.reason: str | None = None  # why the watch cancelled the task
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0  # when the timer is due, while there is one
        self._set_timer(self._arm_at)

    def body_read(self) -> None:
        """The request body has been read whole: ``receive()`` may now watch for a disconnect."""
        self._armable = True
        if self._arm_at is None and not self._stopped:
            self._watch_client()

    def deadline(self, seconds: float, reason: str) -> None:
        """Cancel the task with ``reason`` unless ``clear_deadline`` comes within ``seconds``."""
        self._idle = 0.0
        self._due_reason = reason
        self._due_at = self._loop.time() + seconds
        self._set_timer(self._due_at)

    def idle_deadline(self, seconds: float) -> None:
        """Cancel the task once ``seconds`` pass without a ``touch``."""
        self._idle = seconds
        self._due_reason = IDLE
        self.last_activity = self._loop.time()
        self._due_at = self.last_activity + seconds
        self._set_timer(self._due_at)

    def touch(self) -> None:
        """Something arrived: the idle deadline starts over."""
        self.last_activity = self._loop.time()

    def clear_deadline(self) -> None:
        """Drop the pending deadline, if any (the timer, if set for it, will find nothing due)."""
        self._due_at = None
        self._idle = 0.0

    def caught(self) -> str | None:
        """After a ``CancelledError``: why the watch cancelled, taking the cancel back; None
        when the cancel came from elsewhere (or from elsewhere too) and must propagate."""
        reason = self.reason
        if reason is None:
            return None
        self.reason = None
        self.stop()
        if self._task.uncancel() > self._base:
            return None
        return reason

    def stop(self) -> None:
        """The watched region is over: nothing may cancel the task from now on."""
        if self._stopped:
            return  # the relay stops it once the answer is out, and again when the call ends
        self._armable = False
        self._stopped = True
        self._arm_at = self._due_at = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        receiver, self._receiver = self._receiver, None
        if receiver is not None and not receiver.done():
            receiver.cancel()

    def _set_timer(self, when: float) -> None:
        """Make sure the timer fires no later than ``when`` (never once stopped)."""
        if self._stopped:
            return
        timer = self._timer
        if timer is not None:
            if self._timer_at <= when:
                return
            timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._stopped:
            return
        now = self._loop.time() + _EARLY
        arm_at = self._arm_at
        if arm_at is not None and arm_at <= now:
            self._arm_at = arm_at = None
            if self._armable:
                self._watch_client()
        due_at = self._due_at
        if due_at is not None and self._idle:
            due_at = self._due_at = self.last_activity + self._idle
        if due_at is not None and due_at <= now:
            self._due_at = None
            self._fire(self._due_reason)
            return
        # What is left to wait for: the earlier of the two, if any.
        if arm_at is not None and (due_at is None or arm_at < due_at):
            self._set_timer(arm_at)
        elif due_at is not None:
            self._set_timer(due_at)

    def _watch_client(self) -> None:
        if self._receiver is None:
            self._receiver = asyncio.ensure_future(self._receive(), loop=self._loop)
            self._receiver.add_done_callback(self._client_gone)

    def _client_gone(self, receiver: asyncio.Task[Message]) -> None:
        if receiver is self._receiver and not receiver.cancelled():
            self._fire(DISCONNECT)

    def _fire(self, reason: str) -> None:
        if self.reason is None and not self._stopped:
            self.reason = reason
            self._task.cancel()
