"""The life of a process the server starts beside its workers (the spend writer, the limits
process): its command line, its signals, its settings, and when it ends.

The server binds the child's Unix socket and passes its descriptor (``--fd``) with the
settings handed over (``passgate.runtime.handover``). The child ignores SIGINT and SIGTERM and
serves until its stdin closes: the server closes it once the workers have exited, so
what they sent while shutting down is still served.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from passgate.config import Settings, SettingsError
from passgate.observability.logs import shutdown_logging
from passgate.runtime.handover import SETTINGS_FD_OPTION, handed_settings
from passgate.runtime.process import setup_process_logging

Serve = Callable[[Settings, socket.socket], Coroutine[Any, Any, None]]
Run = Callable[[Coroutine[Any, Any, None]], object]
_READ_SIZE = 1 << 16


async def stdin_closed() -> None:
    """Return once this process's stdin has closed (read to its end)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(_READ_SIZE):
        pass


def run_child(
    name: str, module: str, serve: Serve, argv: list[str] | None, run: Run = asyncio.run
) -> int:
    """Parse ``argv``, read the settings handed over, and ``run`` ``serve`` on the socket.

    ``name`` starts the message of a start-up error (exit status 2); ``module`` is what
    ``python -m`` runs, for the usage line.
    """
    options = argparse.ArgumentParser(prog=f"python -m {module}")
    options.add_argument("--fd", type=int, required=True)
    options.add_argument(SETTINGS_FD_OPTION, type=int, dest="settings_fd", required=True)
    args = options.parse_args(argv)
    # The server decides when to stop (after its workers): signals sent to the whole
    # process group (Ctrl-C in a terminal) must not end this process before them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        settings = handed_settings(args.settings_fd)
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    setup_process_logging(settings)
    listener = socket.socket(fileno=args.fd)
    try:
        run(serve(settings, listener))
    finally:
        shutdown_logging()  # the log thread is a daemon: write what it holds before exit
    return 0
