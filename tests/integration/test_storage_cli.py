"""``passgate keys ...`` and ``passgate db upgrade`` against a real database."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from passgate.auth.keys import hash_key
from passgate.config import Settings
from passgate.runtime.cli_keys import add_subcommands
from passgate.storage.migrate import head_revision
from tests.support.databases import sqlite_url


class Cli:
    """Runs sub-commands the way ``passgate.runtime.cli.main`` does: ``handler(settings, args)``."""

    def __init__(self, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
        self.settings = settings
        self.capsys = capsys
        self.parser = argparse.ArgumentParser(prog="passgate")
        add_subcommands(self.parser.add_subparsers())

    def run(self, *argv: str) -> tuple[int, Any, str]:
        args = self.parser.parse_args(argv)
        code = args.handler(self.settings, args)
        out, err = self.capsys.readouterr()
        return code, orjson.loads(out) if out.strip() else None, err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    settings = Settings(database_url=sqlite_url(tmp_path), master_key=None)
    return Cli(settings, capsys)


def test_db_upgrade_reports_the_revision(cli: Cli) -> None:
    code, out, _ = cli.run("db", "upgrade")
    assert code == 0 and out["revision"] == head_revision() and out["database"].startswith("sqlite")


def test_keys_lifecycle(cli: Cli) -> None:
    code, created, _ = cli.run(
        "keys", "create", "--alias", "ops", "--model", "a", "--model", "b",
        "--max-budget", "3.5", "--duration", "7d", "--metadata", '{"owner": "x"}',
        "--tag", "t1", "--user-id", "u1",
    )  # fmt: skip
    assert code == 0
    key, token = created["key"], created["token"]
    assert token == hash_key(key)
    assert created["models"] == ["a", "b"] and created["max_budget"] == 3.5
    assert created["metadata"] == {"owner": "x", "tags": ["t1"]} and created["expires"]

    code, info, _ = cli.run("keys", "info", token)
    assert code == 0 and info["key_alias"] == "ops" and "key" not in info

    code, updated, _ = cli.run("keys", "update", token, "--rpm-limit", "9", "--clear", "duration")
    assert code == 0 and updated["rpm_limit"] == 9 and updated["expires"] is None

    assert cli.run("keys", "block", token)[1]["blocked"] is True
    assert cli.run("keys", "unblock", token)[1]["blocked"] is False

    code, listing, _ = cli.run("keys", "list", "--user-id", "u1")
    assert code == 0 and listing["total_count"] == 1 and listing["keys"][0]["token"] == token

    code, deleted, _ = cli.run("keys", "delete", "--alias", "ops")
    assert code == 0 and deleted["deleted_keys"] == [token]
    code, _, err = cli.run("keys", "info", token)
    assert code == 1 and "No such key" in err


def test_allowed_deployments_are_set_changed_and_cleared(cli: Cli) -> None:
    code, created, _ = cli.run(
        "keys", "create", "--allowed-deployment", "eu-west", "--allowed-deployment", "us.east_2"
    )
    assert code == 0 and created["allowed_deployments"] == ["eu-west", "us.east_2"]
    token = created["token"]
    code, updated, _ = cli.run("keys", "update", token, "--allowed-deployment", "eu-west")
    assert code == 0 and updated["allowed_deployments"] == ["eu-west"]
    code, cleared, _ = cli.run("keys", "update", token, "--clear", "allowed_deployments")
    assert code == 0 and cleared["allowed_deployments"] == []
    code, _, err = cli.run("keys", "create", "--allowed-deployment", "eu west")
    assert code == 2 and "allowed_deployments.0" in err


def test_invalid_values_name_the_option_and_exit_2(cli: Cli) -> None:
    code, _, err = cli.run("keys", "create", "--duration", "forever")
    assert code == 2 and "duration" in err
    code, _, err = cli.run("keys", "create", "--max-budget", "-1")
    assert code == 2 and "max_budget" in err
    code, _, err = cli.run("keys", "create", "--metadata", "{nope")
    assert code == 2 and "--metadata" in err


def test_a_chosen_key_read_from_stdin(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("sk-chosen-by-operator\n"))
    code, created, _ = cli.run("keys", "create", "--key", "-")
    assert code == 0 and created["token"] == hash_key("sk-chosen-by-operator")
