"""Debian's ``tinyproxy``, started by a test on a free loopback port with its own config and log.

require_tinyproxy()                 # skips (fails under CI=true) when it is not installed
with Tinyproxy(tmp_path, credentials=("user", "secret")) as proxy:
    proxy.url, proxy.url_with(...)  # the proxy's URL, without and with credentials
    proxy.connects()                # the CONNECT request lines its log shows
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import pytest

from tests.support.gateway import free_port

INSTALL = "apt-get install -y tinyproxy"


def require_tinyproxy() -> str:
    """The tinyproxy executable; skips the test without one, or fails it under CI=true."""
    path = shutil.which("tinyproxy")
    if path is None:
        message = f"tinyproxy is not installed; install it with: sudo {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class Tinyproxy:
    """One tinyproxy process in the foreground, logging every request line."""

    def __init__(self, directory: Path, credentials: tuple[str, str] | None = None) -> None:
        self._exe = require_tinyproxy()
        self.port = free_port()
        self.log_path = directory / "tinyproxy.log"
        self._conf = directory / "tinyproxy.conf"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Allow 127.0.0.1",
            "Timeout 60",
            "MaxClients 32",
            "DisableViaHeader Yes",
            f'LogFile "{self.log_path}"',
            "LogLevel Connect",
        ]
        if credentials is not None:
            lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
        self._conf.write_text("\n".join(lines) + "\n")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The proxy's URL, without credentials."""
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        """The proxy's URL with credentials, quoted as a URL must hold them."""
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def log(self) -> str:
        """What tinyproxy logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def requests(self) -> list[str]:
        """The request lines its log shows, without the version (``"CONNECT host:port"``)."""
        marker = "Request (file descriptor "
        lines = []
        for line in self.log().splitlines():
            if marker in line:
                request = line.split(marker, 1)[1].split("): ", 1)[1]
                lines.append(request.rsplit(" ", 1)[0])
        return lines

    def connects(self) -> list[str]:
        """The ``CONNECT host:port`` requests its log shows, in order."""
        return [line for line in self.requests() if line.startswith("CONNECT ")]

    def start(self, timeout: float = 10.0) -> Tinyproxy:
        """Start and wait until the port accepts connections."""
        self._proc = subprocess.Popen(
            [self._exe, "-d", "-c", str(self._conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"tinyproxy exited with {self._proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("tinyproxy did not start listening")

    def stop(self) -> None:
        """Terminate it and wait."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def __enter__(self) -> Tinyproxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
