"""What a client may ask of a worker's server side: head size, time to send, connections.

The app builds one ``ServerLimits`` per worker from the settings and hands it to the
server's protocol through the ASGI lifespan state (``STATE_KEY``), the channel uvicorn
gives every connection of that worker. The protocol enforces the limits before any
routing and reports each refusal through the two callbacks (the app counts them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from passgate.config import Settings

STATE_KEY = "passgate.server_limits"

# why a request was ended by the server side (the label of the metric that counts them)
HEAD_TOO_LARGE = "head_too_large"
TARGET_TOO_LONG = "target_too_long"
HEAD_TIMEOUT = "head_timeout"
BODY_TIMEOUT = "body_timeout"
MALFORMED = "malformed"


def _ignore_refusal() -> None:
    return None


def _ignore_rejection(reason: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The limits of one worker's client connections, and where refusals are reported."""

    max_header_line_bytes: int
    max_head_bytes: int
    max_headers: int
    head_timeout: float
    body_idle_timeout: float
    max_connections: int
    on_refused: Callable[[], None] = _ignore_refusal  # a connection over the cap
    on_rejected: Callable[[str], None] = _ignore_rejection  # a request ended, and why

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        on_refused: Callable[[], None] = _ignore_refusal,
        on_rejected: Callable[[str], None] = _ignore_rejection,
    ) -> ServerLimits:
        """The limits ``settings`` set, reporting to these callbacks."""
        return cls(
            max_header_line_bytes=settings.max_header_line_bytes,
            max_head_bytes=settings.max_head_bytes,
            max_headers=settings.max_headers,
            head_timeout=settings.head_timeout,
            body_idle_timeout=settings.body_idle_timeout,
            max_connections=settings.max_connections,
            on_refused=on_refused,
            on_rejected=on_rejected,
        )
