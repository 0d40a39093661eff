"""Processes the benchmark starts: launch, wait until ready, measure, and always stop."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MIB = 1024 * 1024
_STOP_TIMEOUT = 10.0


class BenchError(RuntimeError):
    """The benchmark cannot go on (a tool is missing, a process did not start)."""


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_tool(name: str) -> str | None:
    """The path of `name` on PATH or in /usr/sbin (nginx lives there, off a user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def ensure_tools() -> dict[str, str]:
    """Paths of nginx and wrk; when one is missing, the command that installs it (never run
    from here: installing system packages is the operator's call)."""
    tools = {name: find_tool(name) for name in ("nginx", "wrk")}
    absent = [name for name, path in tools.items() if path is None]
    if absent:
        packages = " ".join("nginx-light" if name == "nginx" else name for name in absent)
        raise BenchError(
            f"missing {', '.join(absent)}: install with `sudo apt-get install -y {packages}`"
        )
    return {name: path for name, path in tools.items() if path is not None}


def http_status(url: str, headers: dict[str, str] | None = None, timeout: float = 1.0) -> int:
    """The status of GET `url`, or 0 when nothing answers."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (loopback http)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, urllib.error.URLError):
        return 0


def _label(process: psutil.Process, root_pid: int) -> str:
    with contextlib.suppress(psutil.Error):
        command = " ".join(process.cmdline())
        if process.pid == root_pid:
            return "main"
        if "resource_tracker" in command:
            return "resource tracker"
        if "spawn_main" in command or "nginx: worker" in command:
            return "worker"
        if "passgate.runtime.spend_process" in command:
            return "spend writer"
    return "child"


@dataclass
class Service:
    """One started process and its descendants (workers)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def processes(self) -> list[psutil.Process]:
        """The process and all its descendants still alive."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def rss(self) -> list[tuple[str, int]]:
        """(label, RSS bytes) of every process, main first."""
        sizes = []
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                sizes.append((_label(process, self.proc.pid), process.memory_info().rss))
        return sizes

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the process and its descendants."""
        return sum(self.cpu_by_role().values())

    def cpu_by_role(self) -> dict[str, float]:
        """CPU time (user + system) used so far, summed per role (main, worker, spend writer)."""
        totals: dict[str, float] = {}
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                role = _label(process, self.proc.pid)
                totals[role] = totals.get(role, 0.0) + times.user + times.system
        return totals

    def log_tail(self, lines: int = 20) -> str:
        """The end of the process's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Services:
    """Starts services and stops every one of them on close, whatever happened."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[Service] = []

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        ready: Callable[[], bool] | None = None,
        timeout: float = 30.0,
        pass_fds: tuple[int, ...] = (),
    ) -> Service:
        """Start `argv` in its own session (with the descriptors `pass_fds` open in it); wait
        until `ready()` holds."""
        log_path = self.workdir / f"{name.replace(' ', '-')}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        service = Service(name, proc, log_path)
        self.running.append(service)
        deadline = time.monotonic() + timeout
        while ready is not None and not ready():
            if proc.poll() is not None:
                self.stop(service)
                raise BenchError(f"{name} exited ({proc.returncode}):\n{service.log_tail()}")
            if time.monotonic() > deadline:
                self.stop(service)
                raise BenchError(f"{name} not ready after {timeout:.0f}s:\n{service.log_tail()}")
            time.sleep(0.05)
        return service

    def stop(self, service: Service) -> None:
        """Stop a service and its process group (SIGTERM, then SIGKILL)."""
        if service in self.running:
            self.running.remove(service)
        proc = service.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(_STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers left behind by the group leader

    def close(self) -> None:
        """Stop everything still running, newest first."""
        for service in reversed(list(self.running)):
            self.stop(service)


@dataclass
class RssSampler:
    """Samples the total RSS of a service's processes in a thread, keeping the peak."""

    service: Service
    interval: float = 0.005
    baseline: int = 0
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "RssSampler":
        self.baseline = self.peak = sum(size for _, size in self.service.rss())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, sum(size for _, size in self.service.rss()))


def run_with_services(tool: str, body: Callable[[Services], list[str]]) -> int:
    """Run ``body`` with its own Services in a fresh directory, stop them all, print its
    lines (or the error, prefixed with ``tool``); the exit code."""
    with tempfile.TemporaryDirectory(prefix=f"passgate-{tool}-") as workdir:
        Path(workdir).chmod(0o755)  # nginx workers run as another user when started by root
        services = Services(Path(workdir))
        try:
            lines = body(services)
        except BenchError as error:
            print(f"bench.{tool}: {error}", file=sys.stderr)
            return 2
        finally:
            services.close()
    print()
    print("\n".join(lines))
    return 0
