"""The limits process: one per gateway instance with several workers and no Redis.

It holds the rate windows, parallel slots and budget reservations of every worker
(``passgate.limits.holder``), so limits are exact per instance without any extra
service. ``passgate.server`` binds the Unix socket and starts this module with the
socket's file descriptor (``limits_launcher``), then the workers; a holder that dies
is replaced on the same socket and the workers reconnect (``InstanceCounters``).

Like the spend-writer process it ignores SIGINT and SIGTERM and exits when its stdin
closes: the server closes it once the workers have exited.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys

import uvloop

from passgate.config import SettingsError
from passgate.handover import SETTINGS_FD_OPTION, handed_settings
from passgate.limits.holder import CounterHolder
from passgate.observability.logs import shutdown_logging
from passgate.process import collect_seldom, setup_process_logging

MODULE = "passgate.limits_process"


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(1 << 16):
        pass


async def serve(listener: socket.socket) -> None:
    """Serve the workers' connections until stdin closes."""
    holder = CounterHolder()
    server = await asyncio.start_unix_server(holder.handle, sock=listener)
    collect_seldom()
    try:
        await _stdin_closed()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    """Run until stdin closes; ``--fd`` is the listening socket the server bound."""
    options = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    options.add_argument("--fd", type=int, required=True)
    options.add_argument(SETTINGS_FD_OPTION, type=int, dest="settings_fd", required=True)
    args = options.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        settings = handed_settings(args.settings_fd)
    except SettingsError as exc:
        print(f"passgate limits process: {exc}", file=sys.stderr)
        return 2
    setup_process_logging(settings)
    listener = socket.socket(fileno=args.fd)
    try:
        uvloop.run(serve(listener))
    finally:
        shutdown_logging()
    return 0


if __name__ == "__main__":
    sys.exit(main())
