"""Measure the server-side limits: slow heads, and overload with and without load shedding.

    .venv/bin/python -m bench.server_limits slow-heads [--slow 2000]
    .venv/bin/python -m bench.server_limits overload [--clients 1500] [--caps 0,256,512,1024]

``slow-heads`` starts the Python upstream and ``passgate --workers 2`` (default
settings), opens ``--slow`` connections that send half a request head and never finish
it, and meanwhile makes streamed calls one after another. It prints the gateway's RSS
before and with the slow connections held, the latency of the normal calls before and
meanwhile, and how long the gateway took to close the slow connections.

``overload`` runs, for each per-worker cap of calls in flight (0: unbounded), ``--clients``
concurrent clients calling a stream of 20 events ``--gap-ms`` apart over and over, from a
separate process, while this process probes ``/health`` every 50 ms. It prints per cap:
streams completed, calls shed (503), first-byte latency of admitted streams, and the
health route's latency.

Everything runs on 127.0.0.1, bounded in count and time; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import subprocess
import sys
import threading
import time
from typing import Any

import aiohttp

from bench.gateways import MASTER_KEY, ROOT, start_passgate, start_python_upstream
from bench.load import percentile
from bench.payloads import STREAM_REQUEST
from bench.procs import Service, Services, run_with_services

AUTH = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
HALF_HEAD = b"GET /health HTTP/1.1\r\nHost: gw\r\n"


def _rss_mib(service: Service) -> float:
    return sum(size for _, size in service.rss()) / 2**20


def _ms(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction) * 1000:.1f}" if values else "-"


async def _stream_once(session: aiohttp.ClientSession, url: str) -> tuple[int, float, float]:
    """(status, seconds to the first body bytes, seconds in all) of one streamed chat."""
    started = time.perf_counter()
    async with session.post(url + "/mistral/v1/chat/completions", data=STREAM_REQUEST) as resp:
        first = 0.0
        async for _ in resp.content.iter_any():
            if not first:
                first = time.perf_counter() - started
        return resp.status, first, time.perf_counter() - started


async def _sequential(url: str, seconds: float) -> list[float]:
    """Latencies of streamed chats made one after another for ``seconds``."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers=AUTH) as session:
        while time.monotonic() < deadline:
            status, _, total = await _stream_once(session, url)
            if status == 200:
                latencies.append(total)
    return latencies


async def _hold_slow(port: int, count: int) -> tuple[list[asyncio.StreamWriter], list[float]]:
    """Open ``count`` connections that send half a head; list when each is closed."""
    closed_after: list[float] = []
    writers: list[asyncio.StreamWriter] = []

    async def watch(reader: asyncio.StreamReader, opened: float) -> None:
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
        closed_after.append(time.monotonic() - opened)

    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_HEAD)
        writers.append(writer)
        asyncio.get_running_loop().create_task(watch(reader, time.monotonic()))
    return writers, closed_after


async def _slow_heads(gateway: Service, url: str, slow: int) -> list[str]:
    port = int(url.rsplit(":", 1)[1])
    await _sequential(url, 1.0)  # warm up
    before_rss = _rss_mib(gateway)
    before = await _sequential(url, 5.0)
    opened = time.monotonic()
    writers, closed_after = await _hold_slow(port, slow)
    opening = time.monotonic() - opened
    held_rss = _rss_mib(gateway)
    during = await _sequential(url, 5.0)
    held_rss = max(held_rss, _rss_mib(gateway))
    deadline = time.monotonic() + 60.0
    while len(closed_after) < slow and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for writer in writers:
        writer.close()
    return [
        f"| slow connections | {slow} (opened in {opening:.1f} s) |",
        f"| gateway RSS, all processes | {before_rss:.1f} MiB before, {held_rss:.1f} MiB held |",
        f"| streamed call before, p50 / p99 ms | {_ms(before, 0.5)} / {_ms(before, 0.99)} |",
        f"| streamed call meanwhile, p50 / p99 ms | {_ms(during, 0.5)} / {_ms(during, 0.99)} |",
        f"| calls before / meanwhile | {len(before)} / {len(during)} (5 s each) |",
        f"| slow ones closed by the gateway | {len(closed_after)} of {slow} |",
        f"| closed after, min / median / max s | {min(closed_after, default=0):.1f} / "
        f"{percentile(closed_after, 0.5) if closed_after else 0:.1f} / "
        f"{max(closed_after, default=0):.1f} |",
    ]


def slow_heads(args: argparse.Namespace) -> int:
    """The ``slow-heads`` measurement."""

    def body(services: Services) -> list[str]:
        _, upstream_port = start_python_upstream(services, gap_ms=1.0)
        gateway, url = start_passgate(
            services, "passgate", f"http://127.0.0.1:{upstream_port}", accounting=True
        )
        lines = ["| measure | value |", "|---|---|"]
        return lines + asyncio.run(_slow_heads(gateway, url, args.slow))

    return run_with_services("server_limits", body)


async def _load(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` loops of streamed calls for ``seconds``; statuses and first-byte times."""
    ok: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=AUTH, connector=connector, timeout=timeout) as s:

        async def client() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                try:
                    status, first, _ = await _stream_once(s, url)
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    continue
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    ok.append(first)
                else:
                    await asyncio.sleep(1.0)  # Retry-After

        await asyncio.gather(*(client() for _ in range(clients)))
    return {"first_byte": ok, "statuses": statuses, "errors": errors}


def _probe(url: str, stop: threading.Event, latencies: list[float]) -> None:
    host, port = url.removeprefix("http://").split(":")
    while not stop.wait(0.05):
        started = time.perf_counter()
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("GET", "/health/liveliness")
            conn.getresponse().read()
            latencies.append(time.perf_counter() - started)
        except OSError:
            latencies.append(30.0)
        finally:
            conn.close()


def overload(args: argparse.Namespace) -> int:
    """The ``overload`` measurement."""
    caps = [int(cap) for cap in args.caps.split(",")]

    def body(services: Services) -> list[str]:
        _, upstream_port = start_python_upstream(services, gap_ms=args.gap_ms)
        lines = [
            f"{args.clients} clients, streams of 20 events {args.gap_ms:g} ms apart, "
            f"{args.seconds:g} s per cap, 2 workers",
            "",
            "| cap per worker | streams ok | shed 503 | errors | first byte p50 / p99 ms "
            "| health p50 / p99 / max ms |",
            "|---|---|---|---|---|---|",
        ]
        for cap in caps:
            _, url = start_passgate(
                services,
                f"passgate-cap-{cap}",
                f"http://127.0.0.1:{upstream_port}",
                extra_env={"PASSGATE_MAX_CALLS_IN_FLIGHT": str(cap)},
            )
            health: list[float] = []
            stop = threading.Event()
            prober = threading.Thread(target=_probe, args=(url, stop, health))
            prober.start()
            argv = [sys.executable, "-m", "bench.server_limits", "load", "--url", url]
            argv += ["--clients", str(args.clients), "--seconds", str(args.seconds)]
            try:
                out = subprocess.run(
                    argv, cwd=ROOT, capture_output=True, check=True, timeout=args.seconds + 120
                ).stdout
            finally:
                stop.set()
                prober.join()
            result = json.loads(out)
            first: list[float] = result["first_byte"]
            statuses: dict[str, int] = result["statuses"]
            lines.append(
                f"| {cap or 'unbounded'} | {statuses.get('200', 0)} | {statuses.get('503', 0)} "
                f"| {result['errors']} | {_ms(first, 0.5)} / {_ms(first, 0.99)} "
                f"| {_ms(health, 0.5)} / {_ms(health, 0.99)} / {_ms(health, 1.0)} |"
            )
            for service in list(services.running):
                if service.name.startswith("passgate-cap"):
                    services.stop(service)
        return lines

    return run_with_services("server_limits", body)


def main(argv: list[str] | None = None) -> int:
    """Run one measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    slow = commands.add_parser("slow-heads")
    slow.add_argument("--slow", type=int, default=2000)
    over = commands.add_parser("overload")
    over.add_argument("--clients", type=int, default=1500)
    over.add_argument("--caps", default="0,256,512,1024")
    over.add_argument("--gap-ms", type=float, default=50.0)
    over.add_argument("--seconds", type=float, default=8.0)
    load = commands.add_parser("load")
    load.add_argument("--url", required=True)
    load.add_argument("--clients", type=int, required=True)
    load.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    if args.command == "slow-heads":
        return slow_heads(args)
    if args.command == "overload":
        return overload(args)
    result = asyncio.run(_load(args.url, args.clients, args.seconds))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
