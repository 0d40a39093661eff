"""Start a real passgate process (the `passgate` console command) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from passgate.providers.registry import BUILTIN

ROOT = Path(__file__).resolve().parents[2]
PASSGATE = Path(sys.executable).with_name("passgate")
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayProcess:
    """``passgate`` in a subprocess on a free loopback port, its output kept in a file."""

    def __init__(
        self,
        env: dict[str, str],
        workers: int = 1,
        args: tuple[str, ...] = (),
        data_dir: Path | None = None,
        port: int | None = None,
        https_ca: Path | None = None,
    ) -> None:
        """``https_ca``: the gateway serves HTTPS with a certificate this CA signed."""
        self.port = port or free_port()
        self.url = f"{'https' if https_ca else 'http'}://127.0.0.1:{self.port}"
        self._ssl = ssl.create_default_context(cafile=https_ca) if https_ca else None
        self._tmp = tempfile.TemporaryDirectory(prefix="passgate-test-")
        self.data_dir = data_dir or Path(self._tmp.name) / "data"
        self.log_path = Path(self._tmp.name) / "gateway.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PASSGATE_", "LITELLM_"))}
        # a developer's own provider keys and base URLs never reach a test gateway
        providers = [name for spec in BUILTIN for name in (*spec.base_env, *spec.key_env)]
        for name in (*providers, "DATABASE_URL", "REDIS_URL"):
            base.pop(name, None)
        for name in [k for k in base if k.lower() in _PROXY_VARIABLES]:
            base.pop(name)  # the gateway honours them: a test names the proxy it means
        base["PASSGATE_DATA_DIR"] = str(self.data_dir)
        base.update(env)
        self._env = base
        self._args = (
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            *args,
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        """Start and wait until ``/health/liveliness`` answers."""
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(PASSGATE), *self._args],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"passgate exited with {self._proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(
                    self.url + "/health/liveliness", timeout=1, context=self._ssl
                ) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"passgate did not become ready:\n{self.logs()}")

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def logs(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        return self._proc.returncode

    def close(self) -> None:
        """Stop and remove the temporary directory."""
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
