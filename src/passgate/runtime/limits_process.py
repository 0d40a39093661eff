"""The limits process: one per gateway instance with several workers and no Redis.

It holds the rate windows, parallel slots and budget reservations of every worker
(``passgate.limits.holder``), so limits are exact per instance without any extra
service. ``passgate.runtime.server`` binds the Unix socket and starts this module with the
socket's file descriptor (``limits_launcher``), then the workers; a holder that dies
is replaced on the same socket and the workers reconnect (``InstanceCounters``).

Like the spend-writer process (``child_process``) it ignores SIGINT and SIGTERM and
exits when its stdin closes: the server closes it once the workers have exited.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import uvloop

from passgate.config import Settings
from passgate.limits.holder import CounterHolder
from passgate.runtime.child_process import run_child, stdin_closed
from passgate.runtime.process import collect_seldom

MODULE = "passgate.runtime.limits_process"


async def serve(_settings: Settings, listener: socket.socket) -> None:
    """Serve the workers' connections until stdin closes (the holder needs no settings)."""
    holder = CounterHolder()
    server = await asyncio.start_unix_server(holder.handle, sock=listener)
    collect_seldom()
    try:
        await stdin_closed()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    """Run until stdin closes; ``--fd`` is the listening socket the server bound."""
    return run_child("passgate limits process", MODULE, serve, argv, run=uvloop.run)


if __name__ == "__main__":
    sys.exit(main())
