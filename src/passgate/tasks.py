"""Background tasks of the components that run one (pollers, upkeep, samplers)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (when there is one) and wait until it has ended, so that a component's
    ``stop`` returns with nothing of it left running; its cancellation is not an error."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
