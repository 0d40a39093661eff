"""The ``passgate`` command: run the gateway, or manage its database and keys.

Only the command's own process imports this module: to serve, it migrates the database
and then replaces itself with ``passgate.runtime.server``, whose imports are what every worker
loads. So the commands' needs (Alembic, key management) may be imported here freely.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from passgate import __version__
from passgate.accounting.pricing import PricingError, load_catalogs
from passgate.api.deployments import deployment_state
from passgate.app import deployment_pool
from passgate.config import Settings, SettingsError
from passgate.limits.runtime import limits_warning
from passgate.listen_tls import serves_tls
from passgate.observability.logs import shutdown_logging
from passgate.providers.registry import COMPATIBLE_SECTION, enabled
from passgate.runtime.cli_keys import add_subcommands
from passgate.runtime.handover import hand_over, secret_free_environ, secret_values
from passgate.runtime.networks import network_refusal, start_notes, upstream_route
from passgate.runtime.process import setup_process_logging
from passgate.runtime.server import (
    bind_refusal,
    is_loopback,
    resolve_host,
    server_argv,
    worker_count,
)
from passgate.settings_env import load_settings
from passgate.storage.db import DatabaseUrlError, database_url, redacted
from passgate.storage.migrate import upgrade

BANNER_OPEN = (
    "\n!!! passgate is running WITHOUT a master key: anyone who can reach it can use your\n"
    "!!! provider keys. Set PASSGATE_MASTER_KEY (or LITELLM_MASTER_KEY) to require one.\n"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="passgate", description="A fast, faithful LLM API gateway (native pass-through)."
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
    parser.add_argument("--ssl-certfile", type=Path, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", type=Path, help="the certificate's private key (PEM)")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the settings (env and --config) and show the providers and "
        "deployments they declare, without starting",
    )
    parser.set_defaults(handler=None)
    add_subcommands(parser.add_subparsers(title="commands", metavar="{keys,db}"))
    return parser


def migrate(settings: Settings) -> int:
    """Bring the configured database to the newest schema: 0, or 1 with the reason printed."""
    try:
        url = database_url(settings)
    except (DatabaseUrlError, OSError) as exc:
        print(f"passgate: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(upgrade(url))
    except (SQLAlchemyError, OSError) as exc:
        print(f"passgate: cannot migrate {redacted(url)} ({type(exc).__name__})", file=sys.stderr)
        return 1
    return 0


def serve(settings: Settings) -> int:
    """Migrate the database, then become the server (``passgate.runtime.server``) until interrupted.

    The migrations run here, once, before any worker exists: workers then never import
    Alembic. The exec keeps this process's id and output, so whoever started ``passgate``
    (a test, systemd, a shell) still holds the server.
    """
    refusal = bind_refusal(settings)
    if refusal is not None:
        print(f"passgate: {refusal}", file=sys.stderr)
        return 2
    refusal = network_refusal(settings)
    if refusal is not None:
        print(f"passgate: {refusal}", file=sys.stderr)
        return 2
    if settings.master_key is None:
        print(BANNER_OPEN, file=sys.stderr)
    host = resolve_host(settings)
    for note in start_notes(settings, host, is_loopback(host)):
        print(note, file=sys.stderr)
    setup_process_logging(settings)
    warning = limits_warning(settings)
    if warning:
        print(f"passgate: warning: {warning}", file=sys.stderr)
    code = migrate(settings)
    if code != 0:
        return code
    scheme = "https" if serves_tls(settings) else "http"
    print(
        f"passgate {__version__} on {scheme}://{host}:{settings.port} "
        f"({worker_count(settings)} worker(s)), {upstream_route(settings)}",
        file=sys.stderr,
    )
    shutdown_logging()  # every queued line written before the exec drops the writer thread
    sys.stdout.flush()
    sys.stderr.flush()
    # The settings (keys included) go over in an unnamed file the server inherits and
    # reads at once; the server's environment keeps none of the variables holding a key,
    # whatever their name (a config file's ``os.environ/NAME``).
    argv = server_argv(settings, hand_over(settings))
    environ = secret_free_environ(os.environ, secret_values(settings))
    os.execve(argv[0], argv, environ)  # noqa: S606 (our own interpreter)


def check_prices(settings: Settings) -> None:
    """Load every price catalog with the config's prices, so a bad price stops the start; a
    compatible server's bad price names the server."""
    specs = settings.provider_specs()
    load_catalogs(settings.pricing, specs, settings.deployment_pricing())
    for server in settings.compatible_servers:
        own = {f"{server.name}/{model}": fields for model, fields in server.pricing.items()}
        try:
            load_catalogs(own, specs)
        except PricingError as exc:
            raise PricingError(f"{COMPATIBLE_SECTION} entry {server.name!r}: {exc}") from None


def config_summary(settings: Settings) -> list[str]:
    """What a valid configuration serves: each provider's route and deployments (never a
    key: only whether one is set)."""
    lines = ["configuration is valid"]
    for provider in enabled(settings.upstreams(), settings.provider_specs()):
        pool = deployment_pool(settings, provider)
        lines.append(f"{provider.spec.prefix.decode()} -> {provider.name}:")
        for dep in pool.deployments:
            state = deployment_state(dep, pool.health(dep.name))
            models = "all models" if dep.models is None else ", ".join(sorted(dep.models))
            lines.append(
                f"  {dep.name}: {state['api_base']}, weight {dep.weight:g}, {models}, "
                f"{'key set' if dep.provider.credential else 'no key'}"
                f"{', primary' if dep.primary and not pool.single else ''}"
            )
    return lines


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
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
        )
        check_prices(settings)
    except (SettingsError, PricingError) as exc:
        print(f"passgate: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        for line in config_summary(settings):
            print(line)
        return 0
    if args.handler is not None:
        code: int = args.handler(settings, args)
        return code
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
