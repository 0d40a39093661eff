"""Starts, watches and stops the instance's spend-writer process
(``passgate.runtime.spend_process``).

Used by ``passgate.runtime.server`` before uvicorn starts its workers. The listening socket is
bound here, in a directory only this user can open, and handed to the child as an open
file descriptor: workers can connect from their first request (the kernel queues them
until the child accepts), and a child that dies is replaced on the same socket while the
workers' forwarders keep their rows and reconnect. Each child reads the settings from an
unnamed file handed over for it (``passgate.runtime.handover``), never from its environment.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from passgate.config import Settings
from passgate.runtime.handover import SETTINGS_FD_OPTION, hand_over

log = logging.getLogger("passgate.accounting")

MODULE = "passgate.runtime.spend_process"
RESTART_DELAY = 1.0  # seconds before a dead child is replaced
_BACKLOG = 512


class SpendWriterProcess:
    """The spend-writer child process of one server, on a Unix socket of its own."""

    # what a subclass changes to run another child the same way (``limits_launcher``)
    module = MODULE
    name = "spend"
    label = "spend-writer"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._dir = Path(tempfile.mkdtemp(prefix=f"passgate-{self.name}-"))  # mode 0700
        self.path = str(self._dir / f"{self.name}.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(_BACKLOG)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._watcher = threading.Thread(
            target=self._watch, name=f"passgate-{self.name}-watch", daemon=True
        )

    def start(self) -> None:
        """Start the child and the thread that replaces it if it dies."""
        with self._lock:
            self._proc = self._spawn()
        self._watcher.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        fd = self._listener.fileno()
        settings_fd = hand_over(self._settings)
        # -P: the current directory must not shadow the installed package
        argv = [sys.executable, "-P", "-m", self.module, "--fd", str(fd)]
        argv += [SETTINGS_FD_OPTION, str(settings_fd)]
        try:
            return subprocess.Popen(argv, stdin=subprocess.PIPE, pass_fds=(fd, settings_fd))
        finally:
            os.close(settings_fd)  # the child has its own copy

    def _watch(self) -> None:
        while True:
            with self._lock:
                proc = self._proc
            if proc is None:
                return
            code = proc.wait()
            if self._stopping.wait(RESTART_DELAY):
                return
            log.error("%s process exited with code %s; starting a new one", self.label, code)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._proc = self._spawn()

    def stop(self, timeout: float) -> int | None:
        """Let the child store what it holds and exit (closing its stdin); its exit code."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        code: int | None = None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("%s process did not finish in %ss; killed", self.label, timeout)
                proc.kill()
                code = proc.wait()
        self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        return code
