"""Spend writer micro-benchmark: CPU per row on the event loop and in all, loop hold time, RSS.

    .venv/bin/python -m bench.spend_writer [--rows 5000] [--rounds 3] [--pg URL | --pg '']
    .venv/bin/python -m bench.spend_writer --rss sqlite|postgres [--rss-rows 60000]

The first form writes pre-built rows with ``SpendWriter`` (on uvloop, as a worker does) into a
fresh SQLite file and a fresh PostgreSQL database (created on the server of ``--pg``, dropped
afterwards), in batches of 1, 100 and 500 rows, and prints per row: the CPU of the event-loop
thread, the CPU of the whole process (the loop plus aiosqlite's thread; PostgreSQL's own
server CPU is not counted), medians over ``--rounds`` rounds after a warm-up round; and the
longest time the loop was held while those batches were written: the longest single callback,
timed in a second pass on asyncio's own loop (whose callbacks run in Python and can be timed;
the work between two awaits is the same on either loop).

``--rss`` writes ``--rss-rows`` rows in batches of varied sizes (1 to 500) and prints the
process's RSS before and after: prepared-statement caches grow with each statement shape.
"""

import argparse
import asyncio
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import uvloop
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from passgate.accounting.writer import SpendWriter
from passgate.call_record import CallRecord, call_record
from passgate.exchange import Exchange, Usage
from passgate.principal import Principal
from passgate.storage.db import create_engine
from passgate.storage.migrate import upgrade

MIB = 1024 * 1024
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
BATCHES = (1, 100, 500)
KEYS = [
    Principal(kind="virtual", token=f"{i:064x}", key_alias=f"key-{i}", user_id=f"user-{i % 3}")
    for i in range(10)
]


def exchanges(count: int, seed: int) -> Iterator[Exchange]:
    """``count`` finished chat calls shaped like the benchmark's (keys, end users, usage)."""
    rng = random.Random(seed)
    for number in range(count):
        now = time.perf_counter()
        yield Exchange(
            request_id=f"req-{seed}-{number}",
            method="POST",
            route="/mistral/v1/chat/completions",
            upstream_path="/v1/chat/completions",
            provider="mistral",
            start_time=time.time(),
            start=now,
            principal=KEYS[number % len(KEYS)],
            end_user=f"end-user-{rng.randrange(50)}" if number % 2 else None,
            model="mistral-small-latest",
            status=200,
            first_byte=now + rng.random() / 100,
            end=now + rng.random() / 10,
            usage=Usage(prompt_tokens=12, completion_tokens=rng.randrange(400), total_tokens=99),
            cost=rng.random() / 1000,
            tags=["bench"] if number % 3 == 0 else [],
        )


@asynccontextmanager
async def sqlite_engine() -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite file in a temporary directory."""
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        await upgrade(url)
        engine = create_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


@asynccontextmanager
async def postgres_engine(server: str) -> AsyncIterator[AsyncEngine]:
    """A migrated PostgreSQL database created on ``server`` for this run, dropped after it."""
    name = "bench_" + secrets.token_hex(6)
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        await upgrade(url)
        engine = create_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


@dataclass
class Sample:
    """One round: CPU seconds of the loop thread and of the process, for ``rows`` rows."""

    rows: int
    loop_cpu: float
    total_cpu: float


def queued(engine: AsyncEngine, rows: list[CallRecord], batch: int) -> SpendWriter:
    """A writer (not started) with call records queued, to write in batches of ``batch``."""
    writer = SpendWriter(engine, batch_size=batch)
    for row in rows:
        writer.enqueue(row)
    return writer


async def drain(writer: SpendWriter) -> None:
    """Write everything queued (in this task: the writer is not started)."""
    count = writer.pending
    await writer.flush()
    if writer.written != count:
        raise RuntimeError(f"wrote {writer.written} of {count} rows")


async def write(engine: AsyncEngine, rows: list[CallRecord], batch: int) -> Sample:
    """Write ``rows`` in batches of ``batch``; the CPU it took (queueing not counted)."""
    writer = queued(engine, rows, batch)
    loop0, total0 = time.thread_time(), time.process_time()
    await drain(writer)
    return Sample(len(rows), time.thread_time() - loop0, time.process_time() - total0)


async def longest_hold(action: Awaitable[None]) -> float:
    """Seconds of loop-thread CPU of the longest callback run while ``action`` is awaited:
    the longest the loop was held. Needs asyncio's own loop: uvloop runs callbacks in C,
    asyncio's pure-Python ``Handle._run`` can be wrapped (for this call only)."""
    longest = 0.0
    timing = True
    original = asyncio.events.Handle._run

    def timed(handle: asyncio.Handle) -> None:
        nonlocal longest
        # CPU time, not wall time: what the callback itself cost, not the time the OS gave
        # other processes on a shared machine (a collection by the GC does count)
        start = time.thread_time()
        try:
            original(handle)
        finally:
            if timing:  # the callback that ends the measure does not count
                longest = max(longest, time.thread_time() - start)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
    try:
        await asyncio.sleep(0)  # from here on this task runs in timed callbacks
        await action
        await asyncio.sleep(0)  # the callback that finished the action ends here
    finally:
        timing = False
        asyncio.events.Handle._run = original  # type: ignore[method-assign]
    return longest


def build(count: int, seed: int) -> list[CallRecord]:
    """Call records for ``count`` calls (call ids unique per seed), as workers send them."""
    return [call_record(ex) for ex in exchanges(count, seed)]


Key = tuple[str, int]  # (database, batch size)


def row_count(rows: int, batch: int) -> int:
    """Rows per round: fewer for one-row batches (each is a transaction)."""
    return max(rows // 5, 200) if batch == 1 else rows


async def cpu_per_row(
    engine: AsyncEngine, rows: int, rounds: int
) -> dict[int, tuple[float, float]]:
    """Median µs of CPU per row, (event loop, whole process), per batch size."""
    found = {}
    seed = random.randrange(1 << 30)
    for batch in BATCHES:
        count = row_count(rows, batch)
        seed += 1
        await write(engine, build(min(count, 500), seed), batch)  # warm-up
        samples = []
        for _ in range(rounds):
            seed += 1
            samples.append(await write(engine, build(count, seed), batch))
        found[batch] = (
            statistics.median(s.loop_cpu / s.rows for s in samples) * 1e6,
            statistics.median(s.total_cpu / s.rows for s in samples) * 1e6,
        )
    return found


async def hold_ms(engine: AsyncEngine, rows: int, rounds: int) -> dict[int, float]:
    """The longest the loop was held (ms) while batches were written, per batch size."""
    found = {}
    seed = random.randrange(1 << 30)
    for batch in BATCHES:
        count = row_count(rows, batch)
        seed += 1
        await write(engine, build(min(count, 500), seed), batch)  # warm-up
        longest = 0.0
        for _ in range(rounds):
            seed += 1
            writer = queued(engine, build(count, seed), batch)  # outside the measured span
            longest = max(longest, await longest_hold(drain(writer)))
        found[batch] = longest * 1e3
    return found


async def each_database(
    args: argparse.Namespace,
    measure: Callable[[AsyncEngine, int, int], Awaitable[dict[int, Any]]],
) -> dict[Key, Any]:
    """``measure`` run on a fresh SQLite file and (unless --pg '') a fresh PostgreSQL database."""
    found: dict[Key, Any] = {}
    async with sqlite_engine() as engine:
        for batch, value in (await measure(engine, args.rows, args.rounds)).items():
            found["sqlite", batch] = value
    if args.pg:
        async with postgres_engine(args.pg) as engine:
            for batch, value in (await measure(engine, args.rows, args.rounds)).items():
                found["postgres", batch] = value
    return found


def rss() -> float:
    """This process's resident set size, MiB."""
    return float(psutil.Process().memory_info().rss) / MIB


async def bench_rss(kind: str, server: str, total: int) -> None:
    """Print RSS before and after writing ``total`` rows in batches of varied sizes."""
    opener = sqlite_engine() if kind == "sqlite" else postgres_engine(server)
    async with opener as engine:
        await write(engine, build(50, 1), 50)  # warm-up: connections open, statements compiled
        rng = random.Random(7)
        before, written, seed = rss(), 0, 100
        while written < total:
            size = min(rng.randint(1, 500), total - written)
            seed += 1
            await write(engine, build(size, seed), size)
            written += size
        print(f"{kind}: RSS {before:.1f} MiB -> {rss():.1f} MiB after {written} rows")


def call_record_us() -> float:
    """µs of CPU to gather one call record (on the loop, as each call ends)."""
    exs = list(exchanges(2000, 0))
    cpu0 = time.thread_time()
    for ex in exs:
        call_record(ex)
    return (time.thread_time() - cpu0) / len(exs) * 1e6


def main(args: argparse.Namespace) -> None:
    """Run what the arguments ask for and print it."""
    if args.rss:
        uvloop.run(bench_rss(args.rss, args.pg, args.rss_rows))
        return
    started = time.perf_counter()
    cpu = uvloop.run(each_database(args, cpu_per_row))
    holds = asyncio.run(each_database(args, hold_ms))
    lines = [
        f"call_record: {call_record_us():.1f} µs per call (not counted below)",
        "",
        "| database | batch | rows/round | loop CPU µs/row | process CPU µs/row | "
        "longest loop hold ms |",
        "|---|---|---|---|---|---|",
    ]
    for (database, batch), (loop_us, total_us) in cpu.items():
        lines.append(
            f"| {database} | {batch} | {row_count(args.rows, batch)} | {loop_us:.1f} | "
            f"{total_us:.1f} | {holds[database, batch]:.2f} |"
        )
    print("\n".join(lines))
    print(f"({time.perf_counter() - started:.0f} s)")


def parse() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows per round (batches >1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL ('' to skip)")
    parser.add_argument("--rss", choices=("sqlite", "postgres"), help="measure RSS growth only")
    parser.add_argument("--rss-rows", type=int, default=60_000)
    return parser.parse_args()


if __name__ == "__main__":
    main(parse())
