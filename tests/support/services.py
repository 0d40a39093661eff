"""Reach the machine's PostgreSQL and Redis; skip without them, fail under CI=true."""

from __future__ import annotations

import os
import socket

import pytest

PG_DSN = os.environ.get("PASSGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PASSGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(service: str, host: str, port: int) -> None:
    """Skip the test when ``service`` is unreachable, or fail it when CI=true."""
    if _reachable(host, port):
        return
    message = f"{service} is not reachable at {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(f"{message}; start it to run this test")


def require_postgres() -> None:
    """PostgreSQL at 127.0.0.1:5432."""
    require("PostgreSQL", "127.0.0.1", 5432)


def require_redis() -> None:
    """Redis at 127.0.0.1:6379."""
    require("Redis", "127.0.0.1", 6379)
