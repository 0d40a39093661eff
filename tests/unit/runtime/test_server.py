"""The server process's choices: the workers' app factory, the bind check, its command line."""

from __future__ import annotations

import sys

import pytest
from pydantic import SecretStr

from passgate.config import Settings
from passgate.runtime.server import (
    APP_FACTORY,
    MODULE,
    TRACED_APP_FACTORY,
    app_factory,
    bind_refusal,
    parser,
    server_argv,
)


def test_workers_import_the_tracing_factory_only_with_an_otlp_endpoint() -> None:
    assert app_factory(Settings(otlp_endpoint=None)) == APP_FACTORY
    assert app_factory(Settings(otlp_endpoint="http://127.0.0.1:4318")) == TRACED_APP_FACTORY


def test_an_open_gateway_is_refused_on_a_public_address() -> None:
    assert bind_refusal(Settings(master_key=None, host="127.0.0.1")) is None
    assert bind_refusal(Settings(master_key=None, host="0.0.0.0", allow_open=True)) is None
    assert bind_refusal(Settings(master_key=SecretStr("sk-1"), host=None)) is None
    refusal = bind_refusal(Settings(master_key=None, host="0.0.0.0"))
    assert refusal is not None and "refusing to bind 0.0.0.0" in refusal


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (Settings(host="127.0.0.1", port=4100, workers=3), ("127.0.0.1", 4100, 3, None)),
        (Settings(master_key=SecretStr("sk-1"), workers=2), ("0.0.0.0", 4000, 2, None)),
        (Settings(host="0.0.0.0", workers=1, allow_open=True), ("0.0.0.0", 4000, 1, True)),
    ],
)
def test_the_server_command_line_carries_the_resolved_options(
    settings: Settings, expected: tuple[str, int, int, bool | None]
) -> None:
    argv = server_argv(settings)
    assert argv[:4] == [sys.executable, "-P", "-m", MODULE]
    args = parser().parse_args(argv[4:])
    assert (args.host, args.port, args.workers, args.allow_open) == expected
