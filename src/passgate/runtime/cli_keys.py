"""``passgate keys ...`` and ``passgate db upgrade``: key management without curl.

The commands work on the configured database directly (``DATABASE_URL`` or the
default SQLite file), not over HTTP, and print JSON. A running gateway sees their
changes within ``key_cache_ttl`` seconds. Keys may be named by their token id,
which keeps secrets out of shell history; ``-`` reads the key from stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from passgate.api.key_schemas import (
    DeleteKeysRequest,
    GenerateKeyRequest,
    KeySettings,
    ListQuery,
    UpdateKeyRequest,
    key_info,
    key_page,
)
from passgate.api.key_service import KeyService
from passgate.api.validation import describe
from passgate.auth.master import MasterKey
from passgate.config import Settings
from passgate.errors import GatewayError
from passgate.storage.db import create_engine, database_url, redacted, session_factory
from passgate.storage.migrate import current_revision, upgrade

Operation = Callable[[KeyService], Awaitable[Any]]

# option name -> request field, for the key settings shared by create and update
_OPTIONS: tuple[tuple[str, str, type | None, str], ...] = (
    ("--alias", "key_alias", str, "key_alias (unique)"),
    ("--duration", "duration", str, "lifetime such as 30s, 1h, 7d, 30d"),
    ("--model", "models", None, "allowed model (repeat; none = all models)"),
    ("--allowed-route", "allowed_routes", None, "allowed route prefix (repeat)"),
    (
        "--allowed-deployment",
        "allowed_deployments",
        None,
        "deployment the key may reach (repeat; none = all deployments)",
    ),
    ("--max-budget", "max_budget", float, "budget in USD"),
    ("--budget-duration", "budget_duration", str, "budget period such as 1d, 30d"),
    ("--rpm-limit", "rpm_limit", int, "requests per minute"),
    ("--tpm-limit", "tpm_limit", int, "tokens per minute"),
    ("--max-parallel-requests", "max_parallel_requests", int, "concurrent requests"),
    ("--metadata", "metadata", str, "JSON object"),
    ("--tag", "tags", None, "tag for spend tracking (repeat)"),
    ("--user-id", "user_id", str, "owning user"),
    ("--team-id", "team_id", str, "owning team"),
    ("--end-user-id", "end_user_id", str, "end user"),
)
_CLEARABLE = sorted(KeySettings.model_fields)


class UsageError(Exception):
    """A command-line value is invalid."""


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    for option, dest, kind, help_text in _OPTIONS:
        if kind is None:
            parser.add_argument(option, dest=dest, action="append", help=help_text)
        else:
            parser.add_argument(option, dest=dest, type=kind, help=help_text)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--blocked", dest="blocked", action="store_true", default=None)
    group.add_argument("--unblocked", dest="blocked", action="store_false")


def _identifier(value: str) -> str:
    return sys.stdin.readline().strip() if value == "-" else value


def _settings_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {
        dest: getattr(args, dest)
        for _, dest, _, _ in _OPTIONS
        if getattr(args, dest, None) is not None
    }
    if args.blocked is not None:
        fields["blocked"] = args.blocked
    if "metadata" in fields:
        try:
            fields["metadata"] = orjson.loads(fields["metadata"])
        except orjson.JSONDecodeError:
            raise UsageError("--metadata: must be a JSON object") from None
    for name in getattr(args, "clear", None) or ():
        fields[name] = None
    return fields


def _validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UsageError(describe(exc)) from None


def _run(settings: Settings, operation: Operation) -> int:
    async def main() -> Any:
        url = database_url(settings)
        await upgrade(url)
        engine = create_engine(url)
        try:
            secret = settings.master_key
            master = MasterKey(secret.get_secret_value() if secret else None)
            return await operation(KeyService(session_factory(engine), master=master))
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(main())
    except GatewayError as exc:
        print(exc.body().decode(), file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as exc:
        print(f"passgate: database error ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


def _checked(handler: Callable[[Settings, argparse.Namespace], int]) -> Any:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return handler(settings, args)
        except UsageError as exc:
            print(f"passgate: {exc}", file=sys.stderr)
            return 2

    return run


def run_create(settings: Settings, args: argparse.Namespace) -> int:
    """passgate keys create."""
    fields = _settings_fields(args)
    if args.key is not None:
        fields["key"] = _identifier(args.key)
    req: GenerateKeyRequest = _validate(GenerateKeyRequest, fields)

    async def create(service: KeyService) -> Any:
        secret, row = await service.generate(req)
        return {"key": secret, **key_info(row)}

    return _run(settings, create)


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    """passgate keys list."""
    data = {"page": args.page, "size": args.size, "user_id": args.user_id}
    data |= {"team_id": args.team_id, "key_alias": args.alias}
    query: ListQuery = _validate(ListQuery, {k: v for k, v in data.items() if v is not None})

    async def page(service: KeyService) -> Any:
        rows, total = await service.page(query)
        return key_page(rows, total, query, full=True)

    return _run(settings, page)


def run_info(settings: Settings, args: argparse.Namespace) -> int:
    """passgate keys info."""
    identifier = _identifier(args.key)

    async def info(service: KeyService) -> Any:
        return key_info(await service.get(identifier))

    return _run(settings, info)


def run_update(settings: Settings, args: argparse.Namespace) -> int:
    """passgate keys update."""
    req: UpdateKeyRequest = _validate(
        UpdateKeyRequest, {"key": _identifier(args.key), **_settings_fields(args)}
    )

    async def update(service: KeyService) -> Any:
        return key_info(await service.update(req))

    return _run(settings, update)


def run_delete(settings: Settings, args: argparse.Namespace) -> int:
    """passgate keys delete."""
    keys = [_identifier(k) for k in args.keys] or None
    req: DeleteKeysRequest = _validate(
        DeleteKeysRequest, {"keys": keys, "key_aliases": args.alias or None}
    )

    async def delete(service: KeyService) -> Any:
        return {"deleted_keys": await service.delete(req)}

    return _run(settings, delete)


def _blocker(blocked: bool) -> Callable[[Settings, argparse.Namespace], int]:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        identifier = _identifier(args.key)

        async def set_blocked(service: KeyService) -> Any:
            return key_info(await service.set_blocked(identifier, blocked))

        return _run(settings, set_blocked)

    return run


def run_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    """passgate db upgrade."""

    async def migrate() -> dict[str, Any]:
        url = database_url(settings)
        await upgrade(url)
        return {"database": redacted(url), "revision": await current_revision(url)}

    try:
        result = asyncio.run(migrate())
    except (SQLAlchemyError, OSError) as exc:
        print(f"passgate: database error ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keys`` and ``db`` to the ``passgate`` command; each sets ``handler``."""
    keys = subparsers.add_parser("keys", help="manage virtual keys in the configured database")
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="create a key; prints its secret once")
    _add_settings_options(create)
    create.add_argument("--key", help="choose the secret (sk-...; - reads it from stdin)")
    create.set_defaults(handler=_checked(run_create))

    listing = commands.add_parser("list", help="list keys")
    listing.add_argument("--page", type=int)
    listing.add_argument("--size", type=int)
    listing.add_argument("--user-id")
    listing.add_argument("--team-id")
    listing.add_argument("--alias")
    listing.set_defaults(handler=_checked(run_list))

    key_help = "the key's token id, its secret, or - to read it from stdin"
    info = commands.add_parser("info", help="show a key")
    info.add_argument("key", help=key_help)
    info.set_defaults(handler=_checked(run_info))

    update = commands.add_parser("update", help="change a key's settings")
    update.add_argument("key", help=key_help)
    _add_settings_options(update)
    update.add_argument("--clear", action="append", choices=_CLEARABLE, help="unset a field")
    update.set_defaults(handler=_checked(run_update))

    delete = commands.add_parser("delete", help="delete keys")
    delete.add_argument("keys", nargs="*", help=key_help)
    delete.add_argument("--alias", action="append", help="delete the key with this alias")
    delete.set_defaults(handler=_checked(run_delete))

    for name, blocked in (("block", True), ("unblock", False)):
        command = commands.add_parser(name, help=f"{name} a key")
        command.add_argument("key", help=key_help)
        command.set_defaults(handler=_checked(_blocker(blocked)))

    db = subparsers.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_upgrade = db_commands.add_parser("upgrade", help="run the schema migrations")
    db_upgrade.set_defaults(handler=run_db_upgrade)
