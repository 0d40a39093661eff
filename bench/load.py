"""Load drivers: wrk for request/response chat, aiohttp for streaming and uploads."""

import asyncio
import json
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.payloads import CHAT_REQUEST, STREAM_REQUEST, UPLOAD_CONTENT_TYPE, upload_body
from bench.procs import BenchError, RssSampler, Service

_WRK_SCRIPT = """\
local body_file = io.open(os.getenv("BENCH_BODY_FILE"), "rb")
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then wrk.headers["Authorization"] = auth end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%.1f,"p90":%.1f,"p99":%.1f,"mean":%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


@dataclass(frozen=True)
class ChatResult:
    """One wrk run: throughput, latency percentiles (ms), errors, CPU% per watched service."""

    rps: float
    p50: float
    p90: float
    p99: float
    errors: int
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamResult:
    """Sequential streamed chats: time to first event and to the end (ms), chunking."""

    ttfb: list[float]
    total: list[float]
    chunks: int  # body reads the client got, over all responses
    events: int  # SSE events the client got, over all responses
    errors: int
    first_error: str = ""


@dataclass(frozen=True)
class UploadResult:
    """Repeated 10 MB uploads: seconds per upload, peak and baseline RSS of the gateway."""

    seconds: list[float]
    size: int
    rss_baseline: int | None
    rss_peak: int | None
    errors: int
    first_error: str = ""


class Wrk:
    """Runs wrk with a Lua script that posts the chat body and prints parseable percentiles."""

    def __init__(self, wrk: str, workdir: Path) -> None:
        self.wrk = wrk
        self.script = workdir / "chat.lua"
        self.script.write_text(_WRK_SCRIPT)
        self.body = workdir / "chat.json"
        self.body.write_bytes(CHAT_REQUEST)

    def run(
        self,
        url: str,
        auth: str,
        connections: int,
        seconds: int,
        watch: Sequence[Service] = (),
    ) -> ChatResult:
        """Load `url` with `connections` clients for `seconds`; note CPU use of `watch`."""
        threads = 1 if connections == 1 else 2
        argv = [self.wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s"]
        argv += ["--timeout", "10s", "-s", str(self.script), url]
        env = {**os.environ, "BENCH_BODY_FILE": str(self.body), "BENCH_AUTH": auth}
        cpu_before = {service.name: service.cpu_seconds() for service in watch}
        wrk_before = _children_cpu()
        started = time.monotonic()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
        wall = time.monotonic() - started
        cpu = {
            service.name: 100 * (service.cpu_seconds() - cpu_before[service.name]) / wall
            for service in watch
        }
        cpu["wrk"] = 100 * (_children_cpu() - wrk_before) / wall
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
        if line is None:
            raise BenchError(f"wrk gave no result for {url}:\n{done.stdout}\n{done.stderr}")
        data = json.loads(line.removeprefix("BENCH_RESULT "))
        errors = sum(data[key] for key in ("connect", "read", "write", "status", "timeout"))
        return ChatResult(
            rps=data["requests"] / (data["duration_us"] / 1e6),
            p50=data["p50"] / 1000,
            p90=data["p90"] / 1000,
            p99=data["p99"] / 1000,
            errors=errors,
            cpu=cpu,
        )


def _children_cpu() -> float:
    """CPU seconds used so far by this process's finished children (wrk runs as one)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _headers(auth: str, content_type: str) -> dict[str, str]:
    return {"Authorization": auth, "Content-Type": content_type}


async def _stream(url: str, auth: str, count: int, request: bytes) -> StreamResult:
    ttfb: list[float] = []
    total: list[float] = []
    chunks = events = errors = 0
    first_error = ""
    headers = _headers(auth, "application/json")
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for index in range(count + 3):  # the first three warm the connection up
            started = time.perf_counter()
            first: float | None = None
            got_chunks = got_events = 0
            body = b""
            async with session.post(url, data=request, headers=headers) as response:
                async for data in response.content.iter_any():
                    first = first or time.perf_counter()
                    got_chunks += 1
                    got_events += data.count(b"data: ")
                    body = body or data
                status = response.status
            ended = time.perf_counter()
            if index < 3:
                continue
            if status != 200 or first is None:
                errors += 1
                first_error = first_error or describe(status, body)
                continue
            ttfb.append((first - started) * 1000)
            total.append((ended - started) * 1000)
            chunks += got_chunks
            events += got_events
    return StreamResult(ttfb, total, chunks, events, errors, first_error)


def stream(url: str, auth: str, count: int, body: bytes = STREAM_REQUEST) -> StreamResult:
    """`count` streamed answers to ``body`` one after another on one keep-alive connection."""
    return asyncio.run(_stream(url, auth, count, body))


async def _upload(url: str, auth: str, rounds: int, body: bytes) -> tuple[list[float], int, str]:
    seconds: list[float] = []
    errors = 0
    first_error = ""
    headers = _headers(auth, UPLOAD_CONTENT_TYPE)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(rounds):
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.read()
                if response.status != 200:
                    errors += 1
                    first_error = first_error or describe(response.status, answer)
                    continue
            seconds.append(time.perf_counter() - started)
    return seconds, errors, first_error


def upload(url: str, auth: str, rounds: int, gateway: Service | None) -> UploadResult:
    """Upload the 10 MB multipart body `rounds` times, sampling the gateway's total RSS."""
    body = upload_body()
    if gateway is None:
        seconds, errors, first_error = asyncio.run(_upload(url, auth, rounds, body))
        return UploadResult(seconds, len(body), None, None, errors, first_error)
    with RssSampler(gateway) as sampler:
        seconds, errors, first_error = asyncio.run(_upload(url, auth, rounds, body))
    return UploadResult(seconds, len(body), sampler.baseline, sampler.peak, errors, first_error)


def describe(status: int, body: bytes) -> str:
    """A failed response in a few words: status and the start of the body."""
    text = body[:80].decode("utf-8", "replace").replace("|", "/").replace("\n", " ")
    return f"HTTP {status}: {text}"


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (nearest rank), or NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
