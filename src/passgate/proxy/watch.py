"""One watch per forwarded call: it cancels the relaying task when the client leaves or the
upstream is too slow, and says which of the two happened.

Why not ``asyncio.timeout`` and an always-running ``receive()`` task: on the hot path they
cost a task, a future and several loop look-ups per call (each one a ``getpid`` system
call in CPython 3.11), while nearly every call ends long before any of them matters. Here
each concern is one timer handle. The ``receive()`` task that notices a disconnect is only
started once the call has lasted ``arm_after`` seconds (and the request body has been read
whole, so it cannot steal a body chunk): a call that ends sooner never pays for it, and a
client that leaves during a fast call changes nothing the upstream has not already done.

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


class CallWatch:
    """Cancels ``task`` on a client disconnect or an expired deadline; see the module doc."""

    __slots__ = (
        "_arm_timer",
        "_armable",
        "_base",
        "_deadline",
        "_due",
        "_idle",
        "_loop",
        "_receive",
        "_receiver",
        "_stopped",
        "_task",
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
        self._due = False  # arm_after has passed, waiting for the body to be read
        self._receiver: asyncio.Task[Message] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._idle = 0.0
        self.last_activity = 0.0
        self.reason: str | None = None  # why the watch cancelled the task
        self._arm_timer: asyncio.TimerHandle | None
        self._arm_timer = self._loop.call_later(arm_after, self._due_now)

    def body_read(self) -> None:
        """The request body has been read whole: ``receive()`` may now watch for a disconnect."""
        self._armable = True
        if self._due:
            self._watch_client()

    def deadline(self, seconds: float, reason: str) -> None:
        """Cancel the task with ``reason`` unless ``clear_deadline`` comes within ``seconds``."""
        self.clear_deadline()
        self._deadline = self._loop.call_later(seconds, self._fire, reason)

    def idle_deadline(self, seconds: float) -> None:
        """Cancel the task once ``seconds`` pass without a ``touch``."""
        self.clear_deadline()
        self._idle = seconds
        self.last_activity = self._loop.time()
        self._deadline = self._loop.call_at(self.last_activity + seconds, self._check_idle)

    def touch(self) -> None:
        """Something arrived: the idle deadline starts over."""
        self.last_activity = self._loop.time()

    def clear_deadline(self) -> None:
        """Drop the pending deadline, if any."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

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
        self._armable = False
        self._due = False
        self._stopped = True
        if self._arm_timer is not None:
            self._arm_timer.cancel()
            self._arm_timer = None
        self.clear_deadline()
        receiver, self._receiver = self._receiver, None
        if receiver is not None and not receiver.done():
            receiver.cancel()

    def _due_now(self) -> None:
        self._arm_timer = None
        self._due = True
        if self._armable:
            self._watch_client()

    def _watch_client(self) -> None:
        if self._receiver is None:
            self._due = False
            self._receiver = asyncio.ensure_future(self._receive(), loop=self._loop)
            self._receiver.add_done_callback(self._client_gone)

    def _client_gone(self, receiver: asyncio.Task[Message]) -> None:
        if receiver is self._receiver and not receiver.cancelled():
            self._fire(DISCONNECT)

    def _check_idle(self) -> None:
        due = self.last_activity + self._idle
        if self._loop.time() < due:
            self._deadline = self._loop.call_at(due, self._check_idle)
        else:
            self._deadline = None
            self._fire(IDLE)

    def _fire(self, reason: str) -> None:
        if self.reason is None and not self._stopped:
            self.reason = reason
            self._task.cancel()
