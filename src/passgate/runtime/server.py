"""The server process: uvicorn and its workers, started by ``passgate`` once the schema is at head.

``passgate`` (``passgate.runtime.cli``) reads and checks the settings, runs the migrations, hands
the validated settings over in an unnamed file (``passgate.runtime.handover``) and replaces itself
with ``python -m passgate.runtime.server --settings-fd N`` (same pid, same output); this process
reads them there, and hands them to each worker inside the uvicorn config that uvicorn
pickles to it, and to its spend writer the way it got them. The replacement is
what keeps the workers small: uvicorn spawns its workers, and a spawned process first
re-imports its parent's main module, so whatever that module imports is loaded into
every worker and kept there for its whole life. The command's main module brings in
Alembic and the key-management commands (memory every worker would keep); this one imports
only what a worker needs anyway.

Each worker builds its app with the factory ``app_factory`` names, chosen from the
settings so that a worker without tracing never imports the OpenTelemetry SDK.
``uvicorn.run`` refuses an app object with several workers (it expects an import string
then), so ``serve`` starts uvicorn's supervisor itself, as ``uvicorn.run`` does.

The server makes a fresh directory where every worker keeps its metric series, so that a
``/metrics`` scrape answered by any worker returns the instance's totals, and removes it
when the workers are gone.

With accounting on, the server first starts the instance's spend-writer process
(``spend_launcher``) and tells the workers its socket; it stops that process after the
workers have exited, so the rows they flush while shutting down are stored too. With
several workers and no Redis it starts the limits process (``limits_launcher``) the
same way, so the workers share one set of counters.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from passgate.config import Settings, SettingsError
from passgate.listen_tls import uvicorn_tls_options
from passgate.runtime.handover import SETTINGS_FD_OPTION, WorkerApp, handed_settings
from passgate.runtime.limits_launcher import LimitsProcess, limits_process_needed
from passgate.runtime.process import setup_process_logging
from passgate.runtime.spend_launcher import SpendWriterProcess
from passgate.runtime.transport import HeadHoldingHttpToolsProtocol

MODULE = "passgate.runtime.server"
APP_FACTORY = "passgate.runtime.worker:worker_app"
# the spend writer's own stop timeout (30 s while the database is down) plus the webhook's
SPEND_STOP_TIMEOUT = 45.0
TRACED_APP_FACTORY = "passgate.runtime.worker_traced:worker_app"
LIMITS_STOP_TIMEOUT = 5.0  # the limits process has nothing to store


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_host(settings: Settings) -> str:
    """The bind address: all interfaces with a master key, loopback without one."""
    if settings.host:
        return settings.host
    return "0.0.0.0" if settings.master_key else "127.0.0.1"


def worker_count(settings: Settings) -> int:
    """Worker processes to run: the setting, else one per core."""
    return settings.workers or os.cpu_count() or 1


def bind_refusal(settings: Settings) -> str | None:
    """Why these settings must not be served (an open gateway on a public address), or None."""
    host = resolve_host(settings)
    if settings.master_key is None and not is_loopback(host) and not settings.allow_open:
        return (
            f"refusing to bind {host} without a master key; set "
            "PASSGATE_MASTER_KEY, bind 127.0.0.1, or pass --allow-open"
        )
    return None


def app_factory(settings: Settings) -> str:
    """The import string of the workers' app factory: the traced one only with an OTLP endpoint."""
    return TRACED_APP_FACTORY if settings.otlp_endpoint is not None else APP_FACTORY


def server_argv(settings: Settings, settings_fd: int | None = None) -> list[str]:
    """The command line that runs this module for ``settings``, handed over on ``settings_fd``."""
    # -P: the current directory must not shadow the installed package.
    argv = [sys.executable, "-P", "-m", MODULE]
    if settings_fd is not None:
        argv += [SETTINGS_FD_OPTION, str(settings_fd)]
    argv += ["--host", resolve_host(settings), "--port", str(settings.port)]
    argv += ["--workers", str(worker_count(settings))]
    if settings.allow_open:
        argv.append("--allow-open")
    return argv


def run(settings: Settings) -> int:
    """Serve until interrupted; the schema must already be at head."""
    refusal = bind_refusal(settings)
    if refusal is not None:
        print(f"passgate: {refusal}", file=sys.stderr)
        return 2
    setup_process_logging(settings)
    metrics_dir = Path(tempfile.mkdtemp(prefix="passgate-metrics-"))  # mode 0700
    spend = SpendWriterProcess(settings) if settings.accounting else None
    if spend is not None:
        spend.start()
    needed = limits_process_needed(settings, worker_count(settings))
    limits = LimitsProcess(settings) if needed else None
    if limits is not None:
        limits.start()
    handed = WorkerApp(
        app_factory(settings),
        settings,
        spend_socket=spend.path if spend is not None else None,
        limits_socket=limits.path if limits is not None else None,
        metrics_dir=metrics_dir,
    )
    # With one worker uvicorn serves in this process and, once shut down, raises the
    # SIGTERM it caught again under the handler it found: the default one would end the
    # process before the spend writer has stored the rows the worker just flushed.
    previous = signal.signal(signal.SIGTERM, _terminated)
    terminated = False
    try:
        serve(
            handed,
            resolve_host(settings),
            settings.port,
            worker_count(settings),
            tls=uvicorn_tls_options(settings),
        )
    except _Terminated:
        terminated = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        if limits is not None:
            limits.stop(LIMITS_STOP_TIMEOUT)
        if spend is not None:
            spend.stop(SPEND_STOP_TIMEOUT)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if terminated:
        signal.raise_signal(signal.SIGTERM)  # exit as uvicorn would have: by the signal
    return 0


class _Terminated(Exception):
    """SIGTERM arrived after uvicorn's own graceful shutdown (see ``run``)."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def serve(
    factory: str | Callable[[], Any],
    host: str,
    port: int,
    workers: int,
    tls: dict[str, Any] | None = None,
) -> None:
    """Run the app factory (an import string, or a picklable callable such as ``WorkerApp``)
    under uvicorn as passgate runs its own (over HTTPS with ``tls``, the options
    ``listen_tls.uvicorn_tls_options`` gives)."""
    config = uvicorn.Config(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=HeadHoldingHttpToolsProtocol,  # uvicorn's httptools, one write per response
        lifespan="on",
        access_log=False,
        log_level="warning",
        log_config=None,
        server_header=False,
        proxy_headers=False,
        date_header=False,
        timeout_graceful_shutdown=30,
        **(tls or {}),
    )
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    if workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)


def parser() -> argparse.ArgumentParser:
    """The options ``server_argv`` writes."""
    options = argparse.ArgumentParser(
        prog="python -m passgate.runtime.server", description="Serve; run by `passgate`."
    )
    options.add_argument("--host")
    options.add_argument("--port", type=int)
    options.add_argument("--workers", type=int)
    options.add_argument("--allow-open", action="store_true", default=None)
    options.add_argument(SETTINGS_FD_OPTION, type=int, dest="settings_fd")
    return options


def main(argv: list[str] | None = None) -> int:
    """Serve the settings ``passgate`` handed over, with the options applied."""
    args = parser().parse_args(argv)
    if args.settings_fd is None:
        print(
            "passgate: python -m passgate.runtime.server is started by `passgate`", file=sys.stderr
        )
        return 2
    try:
        settings = handed_settings(args.settings_fd)
    except SettingsError as exc:
        print(f"passgate: {exc}", file=sys.stderr)
        return 2
    options = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "allow_open": args.allow_open,
    }
    settings = settings.model_copy(update={k: v for k, v in options.items() if v is not None})
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
