"""Gateways starting at once on one fresh database all migrate it without error."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from passgate.config import Settings
from passgate.storage.db import create_engine, database_url
from passgate.storage.migrate import current_revision, head_revision, upgrade
from tests.support.databases import fresh_postgres, sqlite_url

# Each process imports everything first, then waits for the go signal on stdin, so the
# upgrades really start together.
UPGRADE = """
import asyncio, sys
from passgate.storage.migrate import upgrade
sys.stdin.readline()
asyncio.run(upgrade(sys.argv[1]))
print("ok")
"""


async def race(url: str, processes: int = 3) -> list[tuple[int, bytes]]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            UPGRADE,
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    results = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        results.append((proc.returncode or 0, out + err))
    return results


async def assert_migrated_once(url: str) -> None:
    assert await current_revision(url) == head_revision()
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT count(*) FROM alembic_version"))
            assert rows.scalar() == 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_concurrent_upgrades_on_postgres_all_succeed() -> None:
    async with fresh_postgres() as url:
        for code, output in await race(url):
            assert code == 0, output.decode(errors="replace")
        await assert_migrated_once(url)


async def test_concurrent_upgrades_on_sqlite_all_succeed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    for code, output in await race(url):
        assert code == 0, output.decode(errors="replace")
    await assert_migrated_once(url)


async def test_concurrent_upgrades_in_one_process(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    await asyncio.gather(upgrade(url), upgrade(url))
    await assert_migrated_once(url)


async def test_default_database_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    url = database_url(Settings(data_dir=data_dir, database_url=None))
    assert url.startswith("sqlite+aiosqlite:///") and data_dir.is_dir()
    await upgrade(url)
    assert (data_dir / "passgate.db").is_file()
