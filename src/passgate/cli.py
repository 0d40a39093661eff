"""The ``passgate`` command: run the gateway, or manage its database and keys."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import sys
from pathlib import Path

import uvicorn

from passgate import __version__
from passgate.accounting.pricing import PricingError, load_catalog
from passgate.api.factory import app_from_env, setup_process_logging
from passgate.api.gateway import Gateway
from passgate.cli_keys import add_subcommands
from passgate.config import Settings, SettingsError, export_config_file, load_settings
from passgate.limits.runtime import limits_warning
from passgate.proxy.transport import HeadHoldingHttpToolsProtocol

BANNER_OPEN = (
    "\n!!! passgate is running WITHOUT a master key: anyone who can reach it can use your\n"
    "!!! Mistral key. Set PASSGATE_MASTER_KEY (or LITELLM_MASTER_KEY) to require one.\n"
)


def _is_loopback(host: str) -> bool:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="passgate", description="A fast, faithful LLM API gateway (Mistral pass-through)."
    )
    parser.add_argument("--version", action="version", version=f"passgate {__version__}")
    parser.add_argument(
        "--host", help="bind address (default 0.0.0.0 with a master key, 127.0.0.1 without)"
    )
    parser.add_argument("--port", type=int, help="port (default 4000)")
    parser.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    parser.add_argument("--config", type=Path, help="YAML file overriding env settings")
    parser.add_argument(
        "--allow-open",
        action="store_true",
        default=None,
        help="allow binding a non-loopback address without a master key",
    )
    parser.set_defaults(handler=None)
    add_subcommands(parser.add_subparsers(title="commands", metavar="{keys,db}"))
    return parser


def worker_app() -> Gateway:
    """The app of one server process, its start-up heap kept out of the garbage collector."""
    app = app_from_env()
    # Modules, settings and the app live as long as the process. Frozen, they are no longer
    # traversed by every full collection, which profiles under load showed costing more
    # than any single part of the relay (and p99 spikes of 100+ ms).
    gc.collect()
    gc.freeze()
    return app


def serve(settings: Settings) -> int:
    """Run the server until interrupted."""
    host = resolve_host(settings)
    if settings.master_key is None:
        if not _is_loopback(host) and not settings.allow_open:
            print(
                f"passgate: refusing to bind {host} without a master key; set "
                "PASSGATE_MASTER_KEY, bind 127.0.0.1, or pass --allow-open",
                file=sys.stderr,
            )
            return 2
        print(BANNER_OPEN, file=sys.stderr)
    setup_process_logging(settings)
    workers = settings.workers or os.cpu_count() or 1
    warning = limits_warning(settings)
    if warning:
        print(f"passgate: warning: {warning}", file=sys.stderr)
    print(
        f"passgate {__version__} on http://{host}:{settings.port} ({workers} worker(s)), "
        f"upstream {settings.mistral_api_base}",
        file=sys.stderr,
    )
    uvicorn.run(
        "passgate.cli:worker_app",
        factory=True,
        host=host,
        port=settings.port,
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
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(
            args.config,
            host=args.host,
            port=args.port,
            workers=args.workers,
            allow_open=args.allow_open,
        )
        load_catalog(settings.pricing)
    except (SettingsError, PricingError) as exc:
        print(f"passgate: {exc}", file=sys.stderr)
        return 2
    export_config_file(args.config)
    if args.handler is not None:
        code: int = args.handler(settings, args)
        return code
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
