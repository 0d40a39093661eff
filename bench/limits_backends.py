"""The counter stores alone: one admission and its finish, per store, without HTTP.

    .venv/bin/python -m bench.limits_backends [--calls N]

For a key with an rpm limit and a budget on it, each store (in this process as one
worker keeps it, the limits process over its Unix socket, Redis) runs ``N`` admit +
finish pairs one after another, then ``N`` more from 64 concurrent tasks. The table
gives the wall time and this process's CPU time per pair, the limits process's own CPU
per pair, and the pairs per second at 64 tasks. CPU time is what a loaded machine
distorts least; compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import uvloop

from passgate.limits.backend import (
    AdmitRequest,
    BudgetScope,
    Counters,
    KeyLimits,
    LimitsUnavailable,
    Seed,
    to_nano,
)
from passgate.limits.holder import CounterHolder
from passgate.limits.instance import InstanceCounters
from passgate.limits.local import LocalCounters
from passgate.limits.redis_backend import RedisCounters, redis_client

REDIS_URL = os.environ.get("PASSGATE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
TASKS = 64
REQUEST = AdmitRequest(
    KeyLimits("bench-key", rpm=1_000_000_000),
    (BudgetScope("key", "", "bench", "key:bench", to_nano(1_000_000.0)),),
    to_nano(0.001),
)


async def _seed(scope: BudgetScope) -> Seed:
    return Seed(0, None)


async def _pair(counters: Counters) -> None:
    admission = await counters.admit(REQUEST)
    assert admission.ticket is not None, admission.reason
    await counters.finish(admission.ticket, 30, to_nano(0.0001))


async def _measure(
    counters: Counters, calls: int, other: psutil.Process | None
) -> tuple[float, float, float | None, float]:
    """(wall µs, CPU µs, other process's CPU µs per pair, pairs per second at 64 tasks)."""
    for _ in range(100):  # connect, seed, warm up
        await _pair(counters)
    cpu_other = _cpu(other)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await _pair(counters)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    other_us = None if other is None else (_cpu(other) - cpu_other) / calls * 1e6

    async def worker() -> None:
        for _ in range(calls // TASKS):
            await _pair(counters)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(TASKS)))
    rate = (calls // TASKS * TASKS) / (time.perf_counter() - started)
    return wall / calls * 1e6, cpu / calls * 1e6, other_us, rate


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


def _holder_main(path: str) -> None:
    async def serve() -> None:
        holder = CounterHolder()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen()
        server = await asyncio.start_unix_server(holder.handle, sock=listener)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


async def _stores(
    calls: int, path: str, holder: psutil.Process
) -> list[tuple[str, tuple[float, float, float | None, float] | str]]:
    rows: list[tuple[str, tuple[float, float, float | None, float] | str]] = []
    rows.append(("in the worker", await _measure(LocalCounters(_seed), calls, None)))
    instance = InstanceCounters(path, _seed)
    rows.append(("limits process", await _measure(instance, calls, holder)))
    await instance.stop()
    client = redis_client(REDIS_URL)
    prefix = f"passgate-bench-{secrets.token_hex(4)}:"
    try:
        rows.append(("Redis", await _measure(RedisCounters(client, _seed, prefix), calls, None)))
    except LimitsUnavailable as error:  # a missing Redis is a row, not a crash
        rows.append(("Redis", f"n/a ({type(error).__name__})"))
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return rows


def _table(rows: list[tuple[str, tuple[float, float, float | None, float] | str]]) -> str:
    lines = [
        "| Store | Wall per pair (1 task) | CPU per pair, worker | CPU per pair, limits "
        f"process | Pairs/s ({TASKS} tasks) |",
        "|---|---|---|---|---|",
    ]
    for name, result in rows:
        if isinstance(result, str):
            lines.append(f"| {name} | {result} | | | |")
            continue
        wall, cpu, other, rate = result
        other_text = "-" if other is None else f"{other:.1f} µs"
        lines.append(f"| {name} | {wall:.1f} µs | {cpu:.1f} µs | {other_text} | {rate:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure every store and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="admit + finish pairs per row")
    parser.add_argument("--holder", help=argparse.SUPPRESS)  # run as the limits holder
    args = parser.parse_args(argv)
    if args.holder:
        _holder_main(args.holder)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="passgate-bench-limits-"))
    path = str(workdir / "limits.sock")
    child = subprocess.Popen([sys.executable, "-m", "bench.limits_backends", "--holder", path])
    try:
        deadline = time.monotonic() + 10
        while not Path(path).exists():
            if time.monotonic() > deadline or child.poll() is not None:
                print("bench: the limits holder did not start", file=sys.stderr)
                return 2
            time.sleep(0.05)
        rows = uvloop.run(_stores(args.calls, path, psutil.Process(child.pid)))
    finally:
        child.terminate()
        child.wait(5)
        Path(path).unlink(missing_ok=True)
        workdir.rmdir()
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
