"""Starts, watches and stops the instance's limits process (``passgate.runtime.limits_process``).

The same life as the spend-writer process (``spend_launcher``): the server binds the
socket in a directory only this user can open, hands it to the child, and replaces a
child that dies on the same socket. It runs only where it is needed: several workers
and no Redis (with Redis the counters are there; with one worker they are exact in it).
"""

from __future__ import annotations

from passgate.config import Settings
from passgate.runtime.spend_launcher import SpendWriterProcess

MODULE = "passgate.runtime.limits_process"


class LimitsProcess(SpendWriterProcess):
    """The limits child process of one server, on a Unix socket of its own."""

    module = MODULE
    name = "limits"
    label = "limits"


def limits_process_needed(settings: Settings, workers: int) -> bool:
    """Whether these settings and this many workers need a limits process."""
    return settings.limits_process and workers > 1 and not settings.redis_url
